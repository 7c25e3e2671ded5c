package policy

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// appendRecordJSON appends r exactly as json.Marshal writes it (same field order, omitempty, HTML-safe escaping,
// U+FFFD for invalid UTF-8), without reflection: a one-payload decode appends one record per request, and json.Marshal
// of a Record was a dozen allocations and most of the audit log's CPU. VerifyAudit re-hashes the lines as written, so
// the bytes need not match json.Marshal for the chain to verify; they match anyway so that records written before and
// after this change are indistinguishable (TestAppendRecordJSON and FuzzAppendRecordJSON compare the two). ok is false
// for the rare record it does not handle (a time that is not UTC, or outside years 0–9999, which json.Marshal refuses);
// the caller then uses json.Marshal.
func appendRecordJSON(b []byte, r *Record) (_ []byte, ok bool) {
	if r.Time.Location() != time.UTC {
		return b, false
	}
	if y := r.Time.Year(); y < 0 || y > 9999 {
		return b, false
	}
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"time":"`...)
	b = r.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","via":`...)
	b = appendJSONString(b, r.Via)
	if r.Door != "" {
		b = append(b, `,"door":`...)
		b = appendJSONString(b, r.Door)
	}
	b = append(b, `,"identity":{"subject":`...)
	b = appendJSONString(b, r.Identity.Subject)
	if len(r.Identity.Groups) > 0 {
		b = append(b, `,"groups":`...)
		b = appendJSONStrings(b, r.Identity.Groups)
	}
	if r.Identity.Method != "" {
		b = append(b, `,"method":`...)
		b = appendJSONString(b, r.Identity.Method)
	}
	if r.Identity.Issuer != "" {
		b = append(b, `,"issuer":`...)
		b = appendJSONString(b, r.Identity.Issuer)
	}
	if len(r.Identity.SANs) > 0 {
		b = append(b, `,"sans":`...)
		b = appendJSONStrings(b, r.Identity.SANs)
	}
	b = append(b, '}')
	if r.Namespace != "" {
		b = append(b, `,"namespace":`...)
		b = appendJSONString(b, r.Namespace)
	}
	if r.Operation != "" {
		b = append(b, `,"operation":`...)
		b = appendJSONString(b, r.Operation)
	}
	b = append(b, `,"payloads":`...)
	b = strconv.AppendInt(b, int64(r.Payloads), 10)
	if len(r.KeyIDs) > 0 {
		b = append(b, `,"key_ids":`...)
		b = appendJSONStrings(b, r.KeyIDs)
	}
	if len(r.Bindings) > 0 {
		b = append(b, `,"bindings":`...)
		b = appendJSONStrings(b, r.Bindings)
	}
	b = append(b, `,"decision":`...)
	b = appendJSONString(b, r.Decision)
	b = append(b, `,"reason":`...)
	b = appendJSONString(b, r.Reason)
	if r.Failed != 0 {
		b = append(b, `,"failed":`...)
		b = strconv.AppendInt(b, int64(r.Failed), 10)
	}
	if r.RemoteAddr != "" {
		b = append(b, `,"remote_addr":`...)
		b = appendJSONString(b, r.RemoteAddr)
	}
	b = append(b, `,"prev":`...)
	b = appendJSONString(b, r.Prev)
	return append(b, '}'), true
}

func appendJSONStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

const jsonHex = "0123456789abcdef"

// appendJSONString is encoding/json's appendString with escapeHTML, as json.Marshal calls it (ported from Go's
// encoding/json/encode.go): the escapes must be byte for byte the same.
func appendJSONString(dst []byte, src string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(src); {
		if b := src[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, src[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', jsonHex[b>>4], jsonHex[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(src[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, src[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are escaped by encoding/json for JSONP's sake.
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, src[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', jsonHex[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, src[start:]...)
	return append(dst, '"')
}
