package codecserver

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"slices"

	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// The remote codec protocol's bodies are large lists of base64 blobs; protojson spends most of a 10,000-payload request
// copying strings. These helpers handle the plain shape ({"payloads":[{"metadata":{…},"data":"…"}]}, no escapes,
// padded standard base64) by hand and leave everything else — external payload details, escapes, and every error
// message — to protojson.

// fastUnmarshal decodes body if it has only the plain shape; ok is false when protojson must decide (including every error).
// A body it accepts is one protojson accepts with the same result (FuzzFastUnmarshal checks this).
func fastUnmarshal(body []byte) (ps []*commonpb.Payload, ok bool) {
	s := &scan{b: body}
	if !s.lit('{') {
		return nil, false
	}
	if s.lit('}') {
		return []*commonpb.Payload{}, s.end()
	}
	key, ok := s.str()
	if !ok || string(key) != "payloads" || !s.lit(':') || !s.lit('[') {
		return nil, false
	}
	ps = []*commonpb.Payload{}
	if !s.lit(']') {
		for {
			p, ok := s.payload()
			if !ok {
				return nil, false
			}
			ps = append(ps, p)
			if s.lit(',') {
				continue
			}
			if !s.lit(']') {
				return nil, false
			}
			break
		}
	}
	if !s.lit('}') || !s.end() {
		return nil, false
	}
	return ps, true
}

type scan struct {
	b []byte
	i int
}

func (s *scan) ws() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

func (s *scan) lit(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *scan) end() bool {
	s.ws()
	return s.i == len(s.b)
}

// str reads a string without escapes or control characters (anything else goes to protojson) and returns its raw bytes.
func (s *scan) str() ([]byte, bool) {
	if !s.lit('"') {
		return nil, false
	}
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			v := s.b[start:s.i]
			s.i++
			return v, true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return nil, false
		}
		s.i++
	}
	return nil, false
}

// b64 reads a string of padded standard base64, the form protojson and the Web UI write.
// The base64 decoder itself rejects escapes, quotes and non-ASCII; it skips CR and LF, which JSON forbids raw, so those are checked first.
func (s *scan) b64() ([]byte, bool) {
	if !s.lit('"') {
		return nil, false
	}
	n := bytes.IndexByte(s.b[s.i:], '"')
	if n < 0 || n%4 != 0 {
		return nil, false
	}
	v := s.b[s.i : s.i+n]
	if bytes.IndexByte(v, '\n') >= 0 || bytes.IndexByte(v, '\r') >= 0 {
		return nil, false
	}
	s.i += n + 1
	out := make([]byte, base64.StdEncoding.DecodedLen(n))
	m, err := base64.StdEncoding.Decode(out, v)
	return out[:m], err == nil
}

func (s *scan) payload() (*commonpb.Payload, bool) {
	if !s.lit('{') {
		return nil, false
	}
	p := &commonpb.Payload{}
	if s.lit('}') {
		return p, true
	}
	var seenMD, seenData bool
	for {
		key, ok := s.str()
		if !ok || !s.lit(':') {
			return nil, false
		}
		switch string(key) {
		case "metadata":
			if seenMD || !s.lit('{') {
				return nil, false
			}
			seenMD = true
			p.Metadata = map[string][]byte{}
			if !s.lit('}') {
				for {
					k, ok := s.str()
					if !ok || !s.lit(':') {
						return nil, false
					}
					if _, dup := p.Metadata[string(k)]; dup {
						return nil, false
					}
					v, ok := s.b64()
					if !ok {
						return nil, false
					}
					p.Metadata[string(k)] = v
					if s.lit(',') {
						continue
					}
					if !s.lit('}') {
						return nil, false
					}
					break
				}
			}
		case "data":
			if seenData {
				return nil, false
			}
			seenData = true
			v, ok := s.b64()
			if !ok {
				return nil, false
			}
			if len(v) > 0 {
				p.Data = v
			}
		default:
			return nil, false
		}
		if s.lit(',') {
			continue
		}
		if !s.lit('}') {
			return nil, false
		}
		return p, true
	}
}

// marshalPayloads writes {"payloads":[…]} as protojson would (sorted metadata keys, standard base64, empty fields omitted).
func marshalPayloads(ps []*commonpb.Payload) ([]byte, error) {
	size := 16
	for _, p := range ps {
		if len(p.GetExternalPayloads()) > 0 {
			return protojson.Marshal(&commonpb.Payloads{Payloads: ps})
		}
		size += 32 + base64.StdEncoding.EncodedLen(len(p.GetData()))
		for k, v := range p.GetMetadata() {
			size += 8 + len(k) + base64.StdEncoding.EncodedLen(len(v))
		}
	}
	b := make([]byte, 0, size)
	b = append(b, `{"payloads":[`...)
	for i, p := range ps {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		sep := false
		if md := p.GetMetadata(); len(md) > 0 {
			b = append(b, `"metadata":{`...)
			keys := make([]string, 0, len(md))
			for k := range md {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for j, k := range keys {
				if j > 0 {
					b = append(b, ',')
				}
				kb, err := json.Marshal(k)
				if err != nil {
					return nil, err
				}
				b = append(b, kb...)
				b = append(b, ':', '"')
				b = base64.StdEncoding.AppendEncode(b, md[k])
				b = append(b, '"')
			}
			b = append(b, '}')
			sep = true
		}
		if len(p.GetData()) > 0 {
			if sep {
				b = append(b, ',')
			}
			b = append(b, `"data":"`...)
			b = base64.StdEncoding.AppendEncode(b, p.GetData())
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	b = append(b, ']', '}')
	return b, nil
}
