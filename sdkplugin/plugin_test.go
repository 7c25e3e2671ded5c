package sdkplugin_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	failurepb "go.temporal.io/api/failure/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/sdkplugin"
)

const marker = "BLINDFOLD-SDK-MARKER-7f3a"

type order struct {
	ID    string
	Items []string
	Total float64
}

func newPlugin(t testing.TB, kr codec.Keyring, opts ...sdkplugin.Option) *sdkplugin.Plugin {
	t.Helper()
	p, err := sdkplugin.New(kr, opts...)
	if err != nil {
		t.Fatalf("sdkplugin.New: %v", err)
	}
	return p
}

func requireSealed(t *testing.T, p *commonpb.Payload) {
	t.Helper()
	if got := string(p.GetMetadata()[converter.MetadataEncoding]); got != "binary/encrypted" {
		t.Fatalf("payload encoding = %q, want binary/encrypted", got)
	}
	raw, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(marker)) || bytes.Contains(raw, []byte("json/plain")) {
		t.Fatalf("sealed payload carries plaintext: %q", raw)
	}
}

func TestDataConverterRoundTrip(t *testing.T) {
	p := newPlugin(t, mustKeyring(t))
	dc := p.DataConverter("default")
	tests := []struct {
		name string
		in   any
		out  func() any // pointer to decode into
	}{
		{"string", marker, func() any { return new(string) }},
		{"struct", order{ID: marker, Items: []string{"a", marker}, Total: 12.5}, func() any { return new(order) }},
		{"bytes", []byte(marker), func() any { return new([]byte) }},
		{"int", 42, func() any { return new(int) }},
		{"large", strings.Repeat(marker, 20000), func() any { return new(string) }},
		{"proto", &commonpb.WorkflowType{Name: marker}, func() any { return new(commonpb.WorkflowType) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps, err := dc.ToPayloads(tt.in)
			if err != nil {
				t.Fatalf("ToPayloads: %v", err)
			}
			if n := len(ps.GetPayloads()); n != 1 {
				t.Fatalf("got %d payloads, want 1", n)
			}
			if tt.name != "int" {
				requireSealed(t, ps.Payloads[0])
			}
			out := tt.out()
			if err := dc.FromPayloads(ps, out); err != nil {
				t.Fatalf("FromPayloads: %v", err)
			}
			got := fmt.Sprint(deref(out))
			if m, ok := out.(proto.Message); ok {
				if !proto.Equal(m, tt.in.(proto.Message)) {
					t.Fatalf("round trip = %v, want %v", m, tt.in)
				}
				return
			}
			if want := fmt.Sprint(tt.in); got != want {
				t.Fatalf("round trip = %.80s, want %.80s", got, want)
			}
			if s := dc.ToString(ps.Payloads[0]); tt.name == "string" && !strings.Contains(s, marker) {
				t.Fatalf("ToString = %q, want the decoded value", s)
			}
		})
	}
}

func deref(v any) any {
	switch x := v.(type) {
	case *string:
		return *x
	case *order:
		return *x
	case *[]byte:
		return *x
	case *int:
		return *x
	}
	return v
}

func TestNilAndEmptyPayloads(t *testing.T) {
	dc := newPlugin(t, mustKeyring(t)).DataConverter("default")
	ps, err := dc.ToPayloads()
	if err != nil {
		t.Fatalf("ToPayloads(): %v", err)
	}
	if err := dc.FromPayloads(ps); err != nil {
		t.Fatalf("FromPayloads(empty): %v", err)
	}
	if err := dc.FromPayloads(nil); err != nil {
		t.Fatalf("FromPayloads(nil): %v", err)
	}
	pl, err := dc.ToPayload(nil)
	if err != nil {
		t.Fatalf("ToPayload(nil): %v", err)
	}
	var out any
	if err := dc.FromPayload(pl, &out); err != nil || out != nil {
		t.Fatalf("FromPayload(nil payload) = %v, %v", out, err)
	}
}

func TestFailureTextEncrypted(t *testing.T) {
	p := newPlugin(t, mustKeyring(t))
	fc := p.FailureConverter("default")

	cause := errors.New("root cause " + marker)
	appErr := temporal.NewApplicationErrorWithCause("top "+marker, "OrderRejected", cause, "detail "+marker)
	panicErr := temporal.NewApplicationError("wrapped", "Wrapper", temporal.NewApplicationError("x", "y", nil))
	tests := []struct {
		name string
		err  error
	}{
		{"application error with cause and details", appErr},
		{"nested application errors", panicErr},
		{"canceled", temporal.NewCanceledError("cancel " + marker)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fc.ErrorToFailure(tt.err)
			raw, err := proto.Marshal(f)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(raw, []byte(marker)) {
				t.Fatalf("failure carries the marker in plaintext")
			}
			depth := 0
			for fl := f; fl != nil; fl = fl.GetCause() {
				depth++
				if fl.GetMessage() != "Encoded failure" || fl.GetStackTrace() != "" {
					t.Fatalf("level %d: message %q stack %q, want the placeholder", depth, fl.GetMessage(), fl.GetStackTrace())
				}
				requireSealed(t, fl.GetEncodedAttributes())
			}
			before := proto.Clone(f)
			back := fc.FailureToError(f)
			if !proto.Equal(before, f) {
				t.Fatalf("FailureToError modified the failure it was given")
			}
			if tt.name == "application error with cause and details" && !strings.Contains(back.Error(), marker) {
				t.Fatalf("decoded error %q lacks the original text", back.Error())
			}
		})
	}

	// The details travel as sealed payloads too and decode with the same converter.
	f := fc.ErrorToFailure(appErr)
	details := f.GetApplicationFailureInfo().GetDetails().GetPayloads()
	if len(details) != 1 {
		t.Fatalf("got %d detail payloads, want 1", len(details))
	}
	requireSealed(t, details[0])
	var appBack *temporal.ApplicationError
	if !errors.As(fc.FailureToError(f), &appBack) {
		t.Fatalf("FailureToError did not give an application error")
	}
	var detail string
	if err := appBack.Details(&detail); err != nil || detail != "detail "+marker {
		t.Fatalf("details = %q, %v", detail, err)
	}
	if !strings.Contains(appBack.Unwrap().Error(), "root cause "+marker) {
		t.Fatalf("cause = %v, want the root cause text", appBack.Unwrap())
	}
}

func TestFailureAlreadySealedIsKept(t *testing.T) {
	p := newPlugin(t, mustKeyring(t))
	fc := p.FailureConverter("default")
	f := fc.ErrorToFailure(temporal.NewApplicationError("first "+marker, "T", nil))
	sealed := proto.Clone(f.GetEncodedAttributes()).(*commonpb.Payload)
	// An error made from a failure (as a workflow sees an activity failure) converts back to that failure; its
	// sealed text must be kept, not sealed a second time under the placeholder message.
	again := fc.ErrorToFailure(fc.FailureToError(f))
	if !proto.Equal(again.GetEncodedAttributes(), sealed) {
		t.Fatalf("a failure that was already sealed was re-encoded")
	}
	if !strings.Contains(fc.FailureToError(again).Error(), "first "+marker) {
		t.Fatalf("re-sent failure lost its text")
	}
}

func TestFailureWithheldWhenSealingFails(t *testing.T) {
	fc := newPlugin(t, downKeyring{}).FailureConverter("default")
	var f *failurepb.Failure
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("ErrorToFailure panicked: %v", r)
			}
		}()
		f = fc.ErrorToFailure(errors.New("secret " + marker))
	}()
	raw, _ := proto.Marshal(f)
	if bytes.Contains(raw, []byte(marker)) {
		t.Fatalf("failure text left in plaintext when sealing failed")
	}
	if !strings.Contains(f.GetMessage(), "withheld") || f.GetEncodedAttributes() != nil {
		t.Fatalf("failure = %v, want the withheld placeholder", f)
	}
}

func TestEncodeErrorSurfaces(t *testing.T) {
	dc := newPlugin(t, downKeyring{}).DataConverter("default")
	if _, err := dc.ToPayload(marker); !errors.Is(err, errKeyringDown) {
		t.Fatalf("ToPayload error = %v, want one wrapping the keyring's", err)
	}
}

// wrongNamespace reports whether err is the refusal of an envelope sealed for another namespace: format 1 says so
// (ErrWrongNamespace); format 2 does not name the namespace, so the key is another scope's (ErrUnknownKey) or, with a
// key both scopes share, the associated data fails (ErrTampered).
func wrongNamespace(err error) bool {
	return errors.Is(err, codec.ErrWrongNamespace) || errors.Is(err, codec.ErrUnknownKey) || errors.Is(err, codec.ErrTampered)
}

func TestNamespaceACannotDecodeNamespaceB(t *testing.T) {
	kr := mustKeyring(t) // one keyring holding both namespaces' keys: only the namespace binding stops the decode
	p := newPlugin(t, kr)
	dcA, dcB := p.DataConverter("tenant-a"), p.DataConverter("tenant-b")

	fromB, err := dcB.ToPayload(marker)
	if err != nil {
		t.Fatal(err)
	}
	var s string
	if err := dcB.FromPayload(fromB, &s); err != nil || s != marker {
		t.Fatalf("namespace B cannot read its own payload: %q, %v", s, err)
	}

	tests := []struct {
		name string
		dc   converter.DataConverter
	}{
		{"plain converter", dcA},
		{"workflow context of A", converter.WithDataConverterSerializationContext(dcA,
			converter.WorkflowSerializationContext{Namespace: "tenant-a", WorkflowID: "wf"})},
		{"activity context of A", converter.WithDataConverterSerializationContext(dcA,
			converter.ActivitySerializationContext{Namespace: "tenant-a", WorkflowID: "wf"})},
		{"separate plugin for A", newPlugin(t, kr, sdkplugin.WithNamespace("tenant-a")).DataConverter("")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out string
			err := tt.dc.FromPayload(fromB, &out)
			if !wrongNamespace(err) {
				t.Fatalf("FromPayload = %q, %v; want an error wrapping codec.ErrWrongNamespace, ErrUnknownKey or ErrTampered", out, err)
			}
			if out != "" {
				t.Fatalf("wrong-namespace decode produced %q", out)
			}
		})
	}

	// Format 1 names the namespace in the metadata: relabelling B's envelope as A's gets past the metadata check but
	// not the associated data, which binds the ciphertext to the namespace it was sealed for.
	v1 := newPlugin(t, kr, sdkplugin.WithCodecOptions(codec.WithWriteFormat(1)))
	forged, err := v1.DataConverter("tenant-b").ToPayload(marker)
	if err != nil {
		t.Fatal(err)
	}
	forged.Metadata[codec.MetadataNamespace] = []byte("tenant-a")
	var out string
	if err := v1.DataConverter("tenant-a").FromPayload(forged, &out); !errors.Is(err, codec.ErrTampered) || out != "" {
		t.Fatalf("relabelled payload = %q, %v; want an error wrapping codec.ErrTampered", out, err)
	}

	// Failure text sealed in B stays sealed in A.
	fB := p.FailureConverter("tenant-b").ErrorToFailure(errors.New(marker))
	if msg := p.FailureConverter("tenant-a").FailureToError(fB).Error(); strings.Contains(msg, marker) {
		t.Fatalf("namespace A decoded namespace B's failure text: %q", msg)
	}
}

func TestSerializationContextPicksNamespace(t *testing.T) {
	p := newPlugin(t, mustKeyring(t))
	root := p.DataConverter("default")
	open := func(ns string, pl *commonpb.Payload) error {
		var s string
		return p.DataConverter(ns).FromPayload(pl, &s)
	}
	tests := []struct {
		name   string
		sc     converter.SerializationContext
		sealed string // namespace the payload must be sealed for
	}{
		{"workflow context", converter.WorkflowSerializationContext{Namespace: "orders", WorkflowID: "w1"}, "orders"},
		{"activity context", converter.ActivitySerializationContext{Namespace: "billing", ActivityType: "Charge"}, "billing"},
		{"empty namespace", converter.WorkflowSerializationContext{WorkflowID: "w1"}, "default"},
		{"replayer placeholder", converter.WorkflowSerializationContext{Namespace: "ReplayNamespace"}, "default"},
		{"nexus context", converter.NexusSerializationContext{Endpoint: "e", Service: "s", Operation: "o"}, "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dc := converter.WithDataConverterSerializationContext(root, tt.sc)
			pl, err := dc.ToPayload(marker)
			if err != nil {
				t.Fatal(err)
			}
			if err := open(tt.sealed, pl); err != nil {
				t.Fatalf("payload does not open for %q: %v", tt.sealed, err)
			}
			if tt.sealed != "default" {
				if err := open("default", pl); !wrongNamespace(err) {
					t.Fatalf("payload opened for the bound namespace too: %v", err)
				}
			}
		})
	}
	// The SDK calls WithSerializationContext for nearly every conversion: when nothing changes it must hand back
	// the same converter rather than allocate a new one.
	wfCtx := converter.WorkflowSerializationContext{Namespace: "default", WorkflowID: "x"}
	bound := converter.WithDataConverterSerializationContext(root, wfCtx)
	if same := converter.WithDataConverterSerializationContext(bound, wfCtx); same != bound {
		t.Fatalf("the context a converter is already bound to built a new converter")
	}
	if same := converter.WithDataConverterSerializationContext(root, converter.WorkflowSerializationContext{Namespace: "default"}); same != root {
		t.Fatalf("a context naming only the bound namespace built a new converter")
	}
	fc := p.FailureConverter("default")
	if got := converter.WithFailureConverterSerializationContext(fc, converter.WorkflowSerializationContext{Namespace: "default"}); got != fc {
		t.Fatalf("a context naming the bound namespace built a new failure converter")
	}
	allocs := testing.AllocsPerRun(100, func() {
		converter.WithDataConverterSerializationContext(root, converter.WorkflowSerializationContext{Namespace: "orders", WorkflowID: "x"})
	})
	// The SDK's CodecDataConverter allocates itself and its codec list; the codec value is the third.
	if allocs > 3 {
		t.Fatalf("switching namespace by context allocates %.0f times per call", allocs)
	}
}

func TestFailureConverterFollowsContext(t *testing.T) {
	p := newPlugin(t, mustKeyring(t))
	fc := converter.WithFailureConverterSerializationContext(p.FailureConverter("default"),
		converter.ActivitySerializationContext{Namespace: "billing"})
	f := fc.ErrorToFailure(errors.New(marker))
	if got := p.FailureConverter("billing").FailureToError(f).Error(); !strings.Contains(got, marker) {
		t.Fatalf("billing converter cannot read the failure: %q", got)
	}
	if got := p.FailureConverter("default").FailureToError(f).Error(); strings.Contains(got, marker) {
		t.Fatalf("failure sealed under the context namespace opened under the bound one: %q", got)
	}
}

func TestPluginConfiguresClientForItsNamespace(t *testing.T) {
	p := newPlugin(t, mustKeyring(t))
	tests := []struct {
		name      string
		namespace string
		want      string
	}{
		{"explicit namespace", "payments", "payments"},
		{"sdk default", "", "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := client.Options{Namespace: tt.namespace, Plugins: []client.Plugin{p}}
			if err := p.ConfigureClient(context.Background(), client.PluginConfigureClientOptions{ClientOptions: &opts}); err != nil {
				t.Fatalf("ConfigureClient: %v", err)
			}
			if opts.DataConverter == nil || opts.FailureConverter == nil {
				t.Fatalf("plugin did not set the converters")
			}
			pl, err := opts.DataConverter.ToPayload(marker)
			if err != nil {
				t.Fatal(err)
			}
			requireSealed(t, pl)
			var s string
			if err := p.DataConverter(tt.want).FromPayload(pl, &s); err != nil || s != marker {
				t.Fatalf("client payload does not open for %q: %q, %v", tt.want, s, err)
			}
			f := opts.FailureConverter.ErrorToFailure(errors.New(marker))
			requireSealed(t, f.GetEncodedAttributes())
		})
	}

	// A user's own data converter keeps serializing; the plugin only adds the codec.
	custom := converter.NewCompositeDataConverter(converter.NewProtoJSONPayloadConverter(), converter.NewJSONPayloadConverter())
	opts := client.Options{DataConverter: custom}
	if err := p.ConfigureClient(context.Background(), client.PluginConfigureClientOptions{ClientOptions: &opts}); err != nil {
		t.Fatal(err)
	}
	pl, err := opts.DataConverter.ToPayload(&commonpb.WorkflowType{Name: marker})
	if err != nil {
		t.Fatal(err)
	}
	inner, err := p.PayloadCodec("default").Decode([]*commonpb.Payload{pl})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(inner[0].GetMetadata()[converter.MetadataEncoding]); got != "json/protobuf" {
		t.Fatalf("inner encoding = %q, want the user's converter's json/protobuf", got)
	}

	// The replayer has no client namespace; it uses the plugin's.
	rp := newPlugin(t, mustKeyring(t), sdkplugin.WithNamespace("orders"))
	var ropts worker.WorkflowReplayerOptions
	if err := rp.ConfigureWorkflowReplayer(context.Background(), worker.PluginConfigureWorkflowReplayerOptions{WorkflowReplayerOptions: &ropts}); err != nil {
		t.Fatal(err)
	}
	if ropts.DataConverter == nil || ropts.FailureConverter == nil {
		t.Fatalf("plugin did not configure the replayer")
	}
	pl, err = ropts.DataConverter.ToPayload(marker)
	if err != nil {
		t.Fatal(err)
	}
	var s string
	if err := rp.DataConverter("orders").FromPayload(pl, &s); err != nil {
		t.Fatalf("replayer payload is not sealed for the plugin namespace: %v", err)
	}
}

func TestPlaintextPayloadsDecodeUnchanged(t *testing.T) {
	// A payload that is not in the envelope (written before encryption was enabled, or decoded by the proxy
	// on its way back) passes through the codec untouched.
	dc := newPlugin(t, mustKeyring(t)).DataConverter("default")
	plain, err := converter.GetDefaultDataConverter().ToPayload(marker)
	if err != nil {
		t.Fatal(err)
	}
	var s string
	if err := dc.FromPayload(plain, &s); err != nil || s != marker {
		t.Fatalf("FromPayload(plaintext) = %q, %v", s, err)
	}
}

func TestEncodeSkipsSealedPayloads(t *testing.T) {
	p := newPlugin(t, mustKeyring(t))
	pc := p.PayloadCodec("default")
	plain, _ := converter.GetDefaultDataConverter().ToPayload(marker)
	once, err := pc.Encode([]*commonpb.Payload{plain})
	if err != nil {
		t.Fatal(err)
	}
	twice, err := pc.Encode(once)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(once[0], twice[0]) {
		t.Fatalf("encoding a sealed payload sealed it again")
	}
}

func TestOptionErrors(t *testing.T) {
	kr := mustKeyring(t)
	if _, err := sdkplugin.New(nil); err == nil {
		t.Fatal("New(nil) succeeded")
	}
	tests := []struct {
		name string
		new  func() error
	}{
		{"empty namespace", func() error { _, err := sdkplugin.New(kr, sdkplugin.WithNamespace("")); return err }},
		{"remote option on local plugin", func() error { _, err := sdkplugin.New(kr, sdkplugin.WithAuthHeader("Bearer x")); return err }},
		{"http client on local plugin", func() error { _, err := sdkplugin.New(kr, sdkplugin.WithHTTPClient(http.DefaultClient)); return err }},
		{"nil http client", func() error { _, err := sdkplugin.NewRemote("http://x", sdkplugin.WithHTTPClient(nil)); return err }},
		{"relative endpoint", func() error { _, err := sdkplugin.NewRemote("/codec"); return err }},
		{"non-http endpoint", func() error { _, err := sdkplugin.NewRemote("grpc://host:1"); return err }},
		{"endpoint with query", func() error { _, err := sdkplugin.NewRemote("http://host/?a=b"); return err }},
		{"bad url", func() error { _, err := sdkplugin.NewRemote("http://[::1"); return err }},
		{"empty header name", func() error { _, err := sdkplugin.NewRemote("http://x", sdkplugin.WithHeader("", "v")); return err }},
		{"nil modifier", func() error {
			_, err := sdkplugin.NewRemote("http://x", sdkplugin.WithRequestModifier(nil))
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.new(); err == nil {
				t.Fatal("want an error")
			}
		})
	}
	p := newPlugin(t, kr)
	if p.Name() != sdkplugin.PluginName {
		t.Fatalf("Name() = %q", p.Name())
	}
}

// codecServer serves the remote codec protocol (POST /{namespace}/encode|decode) over a local plugin's codec,
// checking the Authorization header, and records the paths it was called on.
type codecServer struct {
	*httptest.Server
	mu    sync.Mutex
	paths []string
}

func newCodecServer(t *testing.T, local *sdkplugin.Plugin, token string) *codecServer {
	t.Helper()
	cs := &codecServer{}
	cs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cs.mu.Lock()
		cs.paths = append(cs.paths, r.URL.EscapedPath())
		cs.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthenticated", http.StatusUnauthorized)
			return
		}
		parts := strings.Split(strings.Trim(r.URL.EscapedPath(), "/"), "/")
		ns, err := url.PathUnescape(parts[0])
		if len(parts) != 2 || err != nil {
			http.NotFound(w, r)
			return
		}
		converter.NewPayloadCodecHTTPHandler(local.PayloadCodec(ns)).ServeHTTP(w, r)
	}))
	t.Cleanup(cs.Close)
	return cs
}

func TestRemoteCodec(t *testing.T) {
	local := newPlugin(t, mustKeyring(t))
	srv := newCodecServer(t, local, "s3cret")

	remote, err := sdkplugin.NewRemote(srv.URL+"/", sdkplugin.WithAuthHeader("Bearer s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	dc := remote.DataConverter("orders")
	pl, err := dc.ToPayload(order{ID: marker})
	if err != nil {
		t.Fatalf("remote encode: %v", err)
	}
	requireSealed(t, pl)
	var o order
	if err := dc.FromPayload(pl, &o); err != nil || o.ID != marker {
		t.Fatalf("remote decode = %+v, %v", o, err)
	}
	// Same envelope as the local codec: a key-holding process reads what the remote plugin wrote.
	if err := local.DataConverter("orders").FromPayload(pl, &o); err != nil {
		t.Fatalf("local plugin cannot read remotely sealed payload: %v", err)
	}
	// The serialization context's namespace goes into the URL path.
	wf := converter.WithDataConverterSerializationContext(dc, converter.WorkflowSerializationContext{Namespace: "billing/eu"})
	if _, err := wf.ToPayload(marker); err != nil {
		t.Fatal(err)
	}
	// Failure text is sealed remotely too.
	f := remote.FailureConverter("orders").ErrorToFailure(errors.New(marker))
	requireSealed(t, f.GetEncodedAttributes())

	srv.mu.Lock()
	paths := append([]string(nil), srv.paths...)
	srv.mu.Unlock()
	want := map[string]bool{"/orders/encode": false, "/orders/decode": false, "/billing%2Feu/encode": false}
	for _, p := range paths {
		if _, ok := want[p]; ok {
			want[p] = true
		}
	}
	for p, seen := range want {
		if !seen {
			t.Errorf("codec endpoint never called on %s (calls: %v)", p, paths)
		}
	}
}

func TestRemoteCodecErrors(t *testing.T) {
	local := newPlugin(t, mustKeyring(t))
	srv := newCodecServer(t, local, "s3cret")

	noAuth, err := sdkplugin.NewRemote(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := noAuth.DataConverter("orders").ToPayload(marker); err == nil || !strings.Contains(err.Error(), "Unauthorized") {
		t.Fatalf("encode without credentials = %v, want an Unauthorized error", err)
	}
	// A failure that cannot be sealed remotely is withheld, not sent in plaintext.
	f := noAuth.FailureConverter("orders").ErrorToFailure(errors.New(marker))
	if raw, _ := proto.Marshal(f); bytes.Contains(raw, []byte(marker)) {
		t.Fatalf("failure text sent in plaintext after a remote encode error")
	}

	modErr := errors.New("token source down")
	broken, err := sdkplugin.NewRemote(srv.URL, sdkplugin.WithRequestModifier(func(*http.Request) error { return modErr }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := broken.DataConverter("orders").ToPayload(marker); !errors.Is(err, modErr) {
		t.Fatalf("encode with a failing modifier = %v, want it wrapped", err)
	}

	dynamic, err := sdkplugin.NewRemote(srv.URL, sdkplugin.WithRequestModifier(func(r *http.Request) error {
		r.Header.Set("Authorization", "Bearer s3cret")
		return nil
	}), sdkplugin.WithHTTPClient(&http.Client{}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dynamic.DataConverter("orders").ToPayload(marker); err != nil {
		t.Fatalf("encode with a dynamic token: %v", err)
	}

	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"payloads":[]}`)) // wrong count
	}))
	defer down.Close()
	short, err := sdkplugin.NewRemote(down.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := short.DataConverter("orders").ToPayload(marker); err == nil {
		t.Fatalf("encode accepted a response with the wrong payload count")
	}
}
