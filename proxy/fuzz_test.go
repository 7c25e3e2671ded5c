package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	failurepb "go.temporal.io/api/failure/v1"
	historypb "go.temporal.io/api/history/v1"
	apiproxy "go.temporal.io/api/proxy"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/blindfold-dev/blindfold/codec"
)

// Fuzzing instruments every package in the test binary, and the end-to-end tests link the whole Temporal server, which
// makes each execution crawl. Leave them out with the nodevstack tag:
//
//	go test -tags nodevstack -run '^$' -fuzz FuzzEncodeRequest -fuzztime 2m -parallel 1 ./proxy

// fuzzSeeds returns marshalled messages of type m with a marker in every payload and failure field (first variants).
func fuzzSeeds(m proto.Message) [][]byte {
	sens := sensitivity{}
	var out [][]byte
	for variant := 0; variant < 4; variant++ {
		f := &filler{sens: sens, variant: variant, path: map[protoreflect.FullName]int{}, covered: map[protoreflect.FullName]bool{}}
		msg := m.ProtoReflect().New()
		f.fill(msg)
		b, err := proto.Marshal(msg.Interface())
		if err != nil {
			panic(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzEncodeRequest: whatever a caller sends, encoding either fails or leaves no payload unencrypted (search
// attributes aside) and no failure text in plaintext. Never a panic.
func FuzzEncodeRequest(f *testing.F) {
	for _, b := range fuzzSeeds(&workflowservice.RespondWorkflowTaskCompletedRequest{}) {
		f.Add(b)
	}
	c, _ := newTestCodec(f)
	tr := &transformer{codec: c}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte) {
		var req workflowservice.RespondWorkflowTaskCompletedRequest
		if proto.Unmarshal(data, &req) != nil {
			return
		}
		if err := tr.encodeRequest(ctx, "ns", &req); err != nil {
			return
		}
		err := apiproxy.VisitPayloads(ctx, &req, apiproxy.VisitPayloadsOptions{
			SkipSearchAttributes: true,
			Visitor: func(_ *apiproxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
				for _, p := range ps {
					if p != nil && !codec.IsEncrypted(p) {
						t.Fatalf("payload left unencrypted: %v", p.GetMetadata())
					}
				}
				return ps, nil
			},
		})
		if err != nil {
			return // an embedded message the encoder accepted but the checker cannot unpack: nothing to check
		}
		_ = apiproxy.VisitFailures(ctx, &req, apiproxy.VisitFailuresOptions{
			Visitor: func(_ *apiproxy.VisitFailuresContext, fl *failurepb.Failure) error {
				if (fl.GetMessage() != "" && fl.GetMessage() != encodedFailureMessage) || fl.GetStackTrace() != "" {
					t.Fatalf("failure text left in plaintext: %q", fl.GetMessage())
				}
				return nil
			},
		})
	})
}

// FuzzDecodeResponse: whatever the upstream answers, decoding returns a result or an error, never a panic.
func FuzzDecodeResponse(f *testing.F) {
	c, _ := newTestCodec(f)
	tr := &transformer{codec: c}
	ctx := context.Background()
	for _, b := range fuzzSeeds(&workflowservice.PollWorkflowTaskQueueResponse{}) {
		var resp workflowservice.PollWorkflowTaskQueueResponse
		if err := proto.Unmarshal(b, &resp); err != nil {
			f.Fatal(err)
		}
		if err := tr.encodeRequest(ctx, "ns", &resp); err != nil {
			f.Fatal(err)
		}
		sealed, err := proto.Marshal(&resp)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(sealed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var resp workflowservice.PollWorkflowTaskQueueResponse
		if proto.Unmarshal(data, &resp) != nil {
			return
		}
		_ = tr.decodeResponse(ctx, "ns", &resp)
	})
}

// FuzzStrictDecode: a hostile upstream rewrites one payload of a sealed history (a metadata value, or the data), or
// swaps in bytes of its own. Strict decode then hands each caller either the exact original value of some payload the
// proxy sealed, or a refusal; never other plaintext, never a panic, and the payloads it did not touch still open.
//
//	go test -tags nodevstack -run '^$' -fuzz FuzzStrictDecode -fuzztime 10m -parallel 1 ./proxy
func FuzzStrictDecode(f *testing.F) {
	c, _ := newTestCodec(f)
	tr := &transformer{codec: c, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx := context.Background()
	const n = 4
	originals := make([]*commonpb.Payload, n)
	var events []*historypb.HistoryEvent
	for i := range originals {
		originals[i] = jsonPayload(fmt.Sprintf("genuine-%d", i))
		events = append(events, signaled(int64(i+1), time.Unix(0, 0), proto.Clone(originals[i]).(*commonpb.Payload)))
	}
	sealed := &workflowservice.PollWorkflowTaskQueueResponse{History: &historypb.History{Events: events}}
	if err := tr.encodeRequest(ctx, "ns", sealed); err != nil {
		f.Fatal(err)
	}
	for _, key := range []string{"", "encoding", codec.MetadataFormat, codec.MetadataKeyID, codec.MetadataNamespace} {
		f.Add(uint8(1), key, []byte("2"), false)
		f.Add(uint8(2), key, []byte{}, true)
	}
	f.Add(uint8(0), "", signalInput(sealed.GetHistory().GetEvents()[3]).GetData(), true)
	f.Fuzz(func(t *testing.T, which uint8, key string, value []byte, data bool) {
		resp := proto.Clone(sealed).(*workflowservice.PollWorkflowTaskQueueResponse)
		target := int(which) % n
		p := signalInput(resp.GetHistory().GetEvents()[target])
		switch {
		case data:
			p.Data = value
		case key == "":
			// Plaintext of the backend's own making, under any label it likes.
			p.Metadata = map[string][]byte{"encoding": []byte("json/plain")}
			p.Data = value
		default:
			p.Metadata[key] = value
		}
		if err := tr.decodeResponse(ctx, "ns", resp); err != nil {
			t.Fatalf("decode failed instead of refusing: %v", err)
		}
		for i, e := range resp.GetHistory().GetEvents() {
			got := signalInput(e)
			if _, _, refused := codec.IsRefusal(got); refused {
				if i != target {
					t.Fatalf("untouched payload %d refused", i)
				}
				continue
			}
			known := false
			for _, o := range originals {
				known = known || proto.Equal(got, o)
			}
			if !known {
				t.Fatalf("payload %d decoded to a value the proxy never sealed: %v", i, got)
			}
			if i != target && !proto.Equal(got, originals[i]) {
				t.Fatalf("untouched payload %d changed", i)
			}
		}
	})
}
