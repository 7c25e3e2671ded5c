package codecserver_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	commonpb "go.temporal.io/api/common/v1"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/policy"
	"github.com/blindfold-dev/blindfold/proxy/codecserver"
)

// upperCodec stands in for *codec.Codec in this example.
type upperCodec struct{}

func (upperCodec) EncodeFor(_ context.Context, _ codec.Target, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	return ps, nil
}

func (upperCodec) Decode(_ context.Context, _ string, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(ps))
	for i, p := range ps {
		out[i] = &commonpb.Payload{Metadata: p.Metadata, Data: []byte(strings.ToUpper(string(p.Data)))}
	}
	return out, nil
}

func ExampleNew() {
	dir, _ := os.MkdirTemp("", "codec-example")
	defer os.RemoveAll(dir)

	pol, err := policy.Parse("policy.yaml", []byte(`version: 1
access:
  rules:
    - name: auditors
      groups: [auditors]
      namespaces: ["*"]
      operations: [decode]
`))
	if err != nil {
		log.Fatal(err)
	}
	audit, err := policy.OpenAudit(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		log.Fatal(err)
	}
	defer audit.Close()
	tokens, _ := codecserver.NewStaticTokens(map[string]policy.Identity{
		"s3cret": {Subject: "alice", Groups: []string{"auditors"}},
	})
	h, err := codecserver.New(codecserver.Config{
		Codec:          upperCodec{},
		Authenticator:  tokens,
		Authorizer:     pol.Access,
		Audit:          audit,
		AllowedOrigins: []string{"http://localhost:8233"}, // the Web UI
	})
	if err != nil {
		log.Fatal(err)
	}
	// In production: srv := h.Server(); srv.Addr = ":8081"; srv.ListenAndServe()

	req := httptest.NewRequest("POST", "/default/decode", strings.NewReader(`{"payloads":[{"data":"ImhpIg=="}]}`))
	req.Header.Set("Authorization", "Bearer s3cret")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	fmt.Println(w.Code, w.Body.String())

	req = httptest.NewRequest("POST", "/default/decode", strings.NewReader(`{"payloads":[]}`))
	w = httptest.NewRecorder()
	h.ServeHTTP(w, req)
	fmt.Println(w.Code, w.Header().Get("WWW-Authenticate"))
	// Output:
	// 200 {"payloads":[{"data":"IkhJIg=="}]}
	// 401 Bearer realm="blindfold-codec"
}

// ExampleDecoder decodes payloads the way the codec endpoint and `blindfold decode` do: the decision is made and
// audited by Decode, and the allow record is made durable by Commit before any plaintext is released.
func ExampleDecoder() {
	dir, _ := os.MkdirTemp("", "decoder-example")
	defer os.RemoveAll(dir)
	pol, err := policy.Parse("policy.yaml", []byte(`version: 1
access:
  rules:
    - name: auditors
      groups: [auditors]
      namespaces: [default]
      operations: [decode]
`))
	if err != nil {
		log.Fatal(err)
	}
	audit, err := policy.OpenAudit(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		log.Fatal(err)
	}
	defer audit.Close()
	d := &codecserver.Decoder{Codec: upperCodec{}, Authorizer: pol.Access, Audit: audit}
	payloads := []*commonpb.Payload{{Data: []byte(`"hi"`)}}

	alice := policy.Identity{Subject: "alice", Groups: []string{"auditors"}, Method: "local"}
	res, err := d.Decode(context.Background(), codecserver.DecodeRequest{Identity: alice, Namespace: "default", Via: codecserver.ViaDecodeCommand}, payloads)
	if err != nil {
		log.Fatal(err)
	}
	out := string(res.Payloads[0].Data) // prepare the output, but release it only once its record is durable
	if err := res.Commit(); err != nil {
		log.Fatal(err)
	}
	fmt.Println(out, res.Failed)

	mallory := policy.Identity{Subject: "mallory", Method: "local"}
	_, err = d.Decode(context.Background(), codecserver.DecodeRequest{Identity: mallory, Namespace: "default", Via: codecserver.ViaDecodeCommand}, payloads)
	fmt.Println(errors.Is(err, codecserver.ErrForbidden))
	seq, _ := audit.Head()
	fmt.Println("audit records:", seq)
	// Output:
	// "HI" 0
	// true
	// audit records: 2
}
