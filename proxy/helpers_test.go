package proxy

import (
	"context"
	"fmt"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	tokenspb "go.temporal.io/server/api/token/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/blindfold-dev/blindfold/codec"
)

// xorCodec is a stand-in codec for tests that must not depend on key material: it hides a payload (data and metadata)
// by XOR so that no marker survives in the bytes, and it checks the namespace on the way back.
type xorCodec struct{}

const xorEncoding = "test/xor"

func (xorCodec) EncodeFor(_ context.Context, t codec.Target, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	ns := t.Namespace
	out := make([]*commonpb.Payload, len(ps))
	for i, p := range ps {
		if string(p.GetMetadata()["encoding"]) == xorEncoding {
			out[i] = p
			continue
		}
		b, err := proto.Marshal(p)
		if err != nil {
			return nil, err
		}
		for j := range b {
			b[j] ^= 0x5a
		}
		out[i] = &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte(xorEncoding), "ns": []byte(ns)}, Data: b}
	}
	return out, nil
}

func (xorCodec) Decode(_ context.Context, ns string, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(ps))
	for i, p := range ps {
		if string(p.GetMetadata()["encoding"]) != xorEncoding {
			out[i] = p
			continue
		}
		if key := string(p.GetMetadata()["key"]); key != "" {
			return nil, fmt.Errorf("open payload with key %q: %w", key, codec.ErrKeyDestroyed)
		}
		if got := string(p.GetMetadata()["ns"]); got != ns {
			return nil, fmt.Errorf("payload of %q opened in %q: %w", got, ns, codec.ErrWrongNamespace)
		}
		b := append([]byte(nil), p.GetData()...)
		for j := range b {
			b[j] ^= 0x5a
		}
		var q commonpb.Payload
		if err := proto.Unmarshal(b, &q); err != nil {
			return nil, fmt.Errorf("%w: %v", codec.ErrMalformed, err)
		}
		out[i] = &q
	}
	return out, nil
}

// normalized returns a clone of m whose Any values are re-marshalled deterministically, so that proto.Equal compares
// their content rather than their (map-order dependent) bytes.
func normalized(m proto.Message) proto.Message {
	c := proto.Clone(m)
	normalizeAnys(c.ProtoReflect())
	return c
}

func normalizeAnys(m protoreflect.Message) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		child, err := a.UnmarshalNew()
		if err != nil {
			return
		}
		normalizeAnys(child.ProtoReflect())
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(child)
		if err != nil {
			panic(err)
		}
		a.Value = b
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		switch {
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				normalizeAnys(v.List().Get(i).Message())
			}
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					normalizeAnys(mv.Message())
					return true
				})
			}
		default:
			normalizeAnys(v.Message())
		}
		return true
	})
}

// markerPrefix starts every marker the tests plant; no marker may appear in what the proxy forwards.
const markerPrefix = "BFMARK"

func containsMarker(m proto.Message) bool {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return strings.Contains(string(b), markerPrefix)
}

func converterPayload(v any) (*commonpb.Payload, error) {
	return converter.GetDefaultDataConverter().ToPayload(v)
}

func fromPayload(p *commonpb.Payload, v any) error {
	return converter.GetDefaultDataConverter().FromPayload(p, v)
}

// testToken is a task token of the server's format for workflow id, as the proxy reads it to bind task answers.
func testToken(t testing.TB, workflowID string) []byte {
	t.Helper()
	b, err := proto.Marshal(&tokenspb.Task{NamespaceId: "ns-id", WorkflowId: workflowID, RunId: "run"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
