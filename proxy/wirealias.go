package proxy

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"sync"

	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Large messages are parsed so that the data of their large payloads is not copied once more: protobuf's Unmarshal
// copies every bytes field out of its input, which for a 2 MiB payload is a 2 MiB copy (into freshly allocated memory)
// on top of the one that gathered the message from gRPC's frames. unmarshalAliasing instead parses a skeleton of the
// message, in which each large Payload.data is replaced by a marker, and then points each marked payload's data into
// the (unpooled, message-owned) input buffer. The result is the message proto.Unmarshal would produce, field for
// field (the fuzz target checks it); whenever the skeleton cannot stand for the input exactly, the message is parsed
// as usual. Every check of the proxy runs on the parsed message as before: this only changes where the bytes live.

const (
	// aliasMinMessage is the size from which a message is parsed this way: below, the copies cost less than the walk.
	aliasMinMessage = 256 << 10
	// aliasMinData is the smallest payload data left in the input buffer: each keeps the whole buffer alive.
	aliasMinData = 32 << 10
	// aliasMaxDepth bounds the skeleton's recursion; deeper messages are parsed as usual.
	aliasMaxDepth = 64
	markerLen     = 16 + 4 // per-message random prefix, index
)

var payloadFullName = (&commonpb.Payload{}).ProtoReflect().Descriptor().FullName()

// payloadDataField is Payload.data's field number and kind as this API version declares them.
var payloadDataField = func() protowire.Number {
	fd := (&commonpb.Payload{}).ProtoReflect().Descriptor().Fields().ByName("data")
	if fd == nil || fd.Kind() != protoreflect.BytesKind || fd.Cardinality() == protoreflect.Repeated {
		return 0 // never matches a field: the aliasing path is off
	}
	return fd.Number()
}()

// reachCache memoizes reachesPayload by message full name.
var reachCache sync.Map // protoreflect.FullName → bool

// reachesPayload reports whether a message of type md can hold a Payload in a field (directly, in a nested message, a
// list or a map value; not inside an Any, whose value is bytes to this walk).
func reachesPayload(md protoreflect.MessageDescriptor) bool {
	if v, ok := reachCache.Load(md.FullName()); ok {
		return v.(bool)
	}
	r := reachesFrom(md, map[protoreflect.FullName]bool{})
	reachCache.Store(md.FullName(), r)
	return r
}

func reachesFrom(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) bool {
	if md.FullName() == payloadFullName {
		return true
	}
	if seen[md.FullName()] {
		return false
	}
	seen[md.FullName()] = true
	fds := md.Fields()
	for i := range fds.Len() {
		if child := fds.Get(i).Message(); child != nil && reachesFrom(child, seen) {
			return true
		}
	}
	return false
}

// unmarshalAliasing parses buf into m, which must be empty, leaving large payload data in buf (which m then owns:
// buf must not be reused). It returns false, with m reset, when it did not: the caller parses buf as usual.
func unmarshalAliasing(buf []byte, m proto.Message) bool {
	return unmarshalAliasingFrom(buf, m, aliasMinData)
}

// unmarshalAliasingFrom is unmarshalAliasing for data of at least minData bytes (tests use small ones).
func unmarshalAliasingFrom(buf []byte, m proto.Message, minData int) bool {
	if payloadDataField == 0 || !reachesPayload(m.ProtoReflect().Descriptor()) {
		return false
	}
	var prefix [16]byte
	if _, err := rand.Read(prefix[:]); err != nil {
		return false
	}
	s := skeleton{prefix: prefix[:], minData: max(minData, markerLen+1), budget: 2*len(buf) + 4096}
	skel, ok := s.rewrite(nil, buf, m.ProtoReflect().Descriptor(), 0)
	if !ok || len(s.big) == 0 {
		return false
	}
	if err := proto.Unmarshal(skel, m); err != nil {
		proto.Reset(m)
		return false
	}
	placed := make([]bool, len(s.big))
	n := 0
	ok = placeMarked(m.ProtoReflect(), func(p *commonpb.Payload) bool {
		d := p.GetData()
		if len(d) != markerLen || !bytes.Equal(d[:16], s.prefix) {
			return true
		}
		i := binary.BigEndian.Uint32(d[16:])
		if int(i) >= len(s.big) || placed[i] {
			return false
		}
		placed[i] = true
		n++
		p.Data = s.big[i]
		return true
	})
	if !ok || n != len(s.big) {
		// A marker was overwritten (a repeated occurrence of a singular field: the last one wins) or duplicated.
		proto.Reset(m)
		return false
	}
	return true
}

// skeleton rewrites a message's wire bytes with each large Payload.data replaced by a marker.
type skeleton struct {
	prefix  []byte
	minData int
	// budget is how many more bytes the rewrite may write (each level's output counts, and holds its children's):
	// every nesting level copies what it keeps once more, and a deeply nested message must not make the proxy copy
	// its bytes dozens of times (it is parsed as usual instead).
	budget int
	big    [][]byte // the replaced values, subslices of the input with their capacity capped
}

// rewrite appends to out the bytes of message b (of type md) with the large payload data replaced, and reports false
// when it cannot (malformed input, too deep): then nothing of it is used.
func (s *skeleton) rewrite(out, b []byte, md protoreflect.MessageDescriptor, depth int) ([]byte, bool) {
	if depth > aliasMaxDepth {
		return nil, false
	}
	isPayload := md.FullName() == payloadFullName
	fields := md.Fields()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, false
		}
		field := b[:n+m]
		b = b[n+m:]
		if typ != protowire.BytesType {
			out = append(out, field...)
			continue
		}
		v, _ := protowire.ConsumeBytes(field[n:])
		if isPayload && num == payloadDataField && len(v) >= s.minData {
			out = append(out, field[:n]...)
			out = protowire.AppendVarint(out, markerLen)
			out = append(out, s.prefix...)
			out = binary.BigEndian.AppendUint32(out, uint32(len(s.big)))
			s.big = append(s.big, v[:len(v):len(v)])
			continue
		}
		fd := fields.ByNumber(num)
		if fd == nil || fd.Kind() != protoreflect.MessageKind || !reachesPayload(fd.Message()) {
			out = append(out, field...)
			continue
		}
		// A message that may hold payloads (a map entry is a message too): rewrite it, with its new length.
		out = append(out, field[:n]...)
		child, ok := s.rewrite(nil, v, fd.Message(), depth+1)
		if !ok {
			return nil, false
		}
		out = protowire.AppendBytes(out, child)
	}
	if s.budget -= len(out); s.budget < 0 {
		return nil, false
	}
	return out, true
}

// placeMarked calls fn on every payload of m reachable the way rewrite descends (message fields, lists, map values);
// it stops and returns false as soon as fn does.
func placeMarked(m protoreflect.Message, fn func(*commonpb.Payload) bool) bool {
	if m.Descriptor().FullName() == payloadFullName {
		p, ok := m.Interface().(*commonpb.Payload)
		return ok && fn(p)
	}
	ok := true
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			if vd := fd.MapValue(); vd.Message() != nil && reachesPayload(vd.Message()) {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					ok = placeMarked(mv.Message(), fn)
					return ok
				})
			}
		case fd.Message() == nil || !reachesPayload(fd.Message()):
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && ok; i++ {
				ok = placeMarked(l.Get(i).Message(), fn)
			}
		default:
			ok = placeMarked(v.Message(), fn)
		}
		return ok
	})
	return ok
}
