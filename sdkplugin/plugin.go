package sdkplugin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"google.golang.org/grpc"

	"github.com/blindfold-dev/blindfold/codec"
)

// PluginName is the name the plugin registers under in the SDK.
const PluginName = "blindfold"

// Plugin is a Go SDK client and worker plugin that installs Blindfold's data converter and failure converter.
// Add it to client.Options.Plugins; workers created from that client inherit it.
type Plugin struct {
	*temporal.SimplePlugin

	codecs    *codecFactory
	namespace string
}

// The SDK only accepts plugins that embed its bases; these assertions keep *Plugin usable in both option lists.
var (
	_ client.Plugin = (*Plugin)(nil)
	_ worker.Plugin = (*Plugin)(nil)
)

// Option configures New and NewRemote.
type Option func(*config) error

type config struct {
	namespace  string
	codecOpts  []codec.Option
	nexusPeers []string
	httpClient *http.Client
	headers    http.Header
	modify     []func(*http.Request) error
	remoteOnly []string
}

// WithNamespace sets the namespace payloads are sealed for when neither the client nor the SDK's serialization
// context names one: the workflow replayer, and converters used outside a client. The default is "default".
func WithNamespace(namespace string) Option {
	return func(c *config) error {
		if namespace == "" {
			return errors.New("namespace must not be empty")
		}
		c.namespace = namespace
		return nil
	}
}

// WithCodecOptions passes options to codec.New (compression, for example). Only New accepts it.
func WithCodecOptions(opts ...codec.Option) Option {
	return func(c *config) error {
		c.codecOpts = append(c.codecOpts, opts...)
		return nil
	}
}

// WithNexusPeers lists namespaces whose Nexus values the plugin opens in a Nexus context besides its own: the input
// of an operation a caller in a peer namespace sealed (on the handler's side), the result a handler in a peer
// namespace sealed (on the caller's side). It is the proxy's policy setting nexus_peers (docs/policy.md), and widens
// what the backend can move in the same way (docs/binding.md): list only namespaces that trust each other. Only New
// accepts it (a remote plugin checks no binding).
func WithNexusPeers(namespaces ...string) Option {
	return func(c *config) error {
		for _, ns := range namespaces {
			if ns == "" {
				return errors.New("nexus peer namespace must not be empty")
			}
		}
		c.nexusPeers = append(c.nexusPeers, namespaces...)
		return nil
	}
}

// WithHTTPClient sets the HTTP client NewRemote calls the codec endpoint with (TLS settings, timeout).
// The default is a client with a 10 s timeout.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *config) error {
		if hc == nil {
			return errors.New("http client must not be nil")
		}
		c.httpClient = hc
		c.remoteOnly = append(c.remoteOnly, "WithHTTPClient")
		return nil
	}
}

// WithAuthHeader sets the Authorization header NewRemote sends to the codec endpoint, e.g. "Bearer <token>".
func WithAuthHeader(value string) Option {
	return WithHeader("Authorization", value)
}

// WithHeader adds a header NewRemote sends with every codec endpoint request.
func WithHeader(name, value string) Option {
	return func(c *config) error {
		if name == "" {
			return errors.New("header name must not be empty")
		}
		if c.headers == nil {
			c.headers = http.Header{}
		}
		c.headers.Add(name, value)
		c.remoteOnly = append(c.remoteOnly, "WithHeader")
		return nil
	}
}

// WithRequestModifier lets NewRemote adjust every codec endpoint request before it is sent, e.g. to attach a
// freshly minted token. An error from fn fails the encode or decode.
func WithRequestModifier(fn func(*http.Request) error) Option {
	return func(c *config) error {
		if fn == nil {
			return errors.New("request modifier must not be nil")
		}
		c.modify = append(c.modify, fn)
		c.remoteOnly = append(c.remoteOnly, "WithRequestModifier")
		return nil
	}
}

func buildConfig(opts []Option) (*config, error) {
	cfg := &config{namespace: client.DefaultNamespace}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(cfg); err != nil {
			return nil, fmt.Errorf("sdkplugin: %w", err)
		}
	}
	return cfg, nil
}

// New returns a plugin that seals and opens payloads locally with keys from kr (for example a *keys.Manager).
func New(kr codec.Keyring, opts ...Option) (*Plugin, error) {
	if kr == nil {
		return nil, errors.New("sdkplugin: keyring must not be nil")
	}
	cfg, err := buildConfig(opts)
	if err != nil {
		return nil, err
	}
	if len(cfg.remoteOnly) > 0 {
		return nil, fmt.Errorf("sdkplugin: %s applies to NewRemote only", cfg.remoteOnly[0])
	}
	c, err := codec.New(kr, cfg.codecOpts...)
	if err != nil {
		return nil, fmt.Errorf("sdkplugin: create codec: %w", err)
	}
	f := newLocalFactory(c)
	f.nexusPeers = cfg.nexusPeers
	return newPlugin(cfg, f)
}

// NewRemote returns a plugin that holds no keys: it calls the Blindfold codec endpoint at endpoint
// (POST {endpoint}/{namespace}/encode and /decode) for every payload batch. endpoint is an http or https URL,
// e.g. "https://blindfold.internal:8081".
func NewRemote(endpoint string, opts ...Option) (*Plugin, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("sdkplugin: parse codec endpoint: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("sdkplugin: codec endpoint %q must be an absolute http or https URL", endpoint)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("sdkplugin: codec endpoint %q must not carry a query or fragment", endpoint)
	}
	cfg, err := buildConfig(opts)
	if err != nil {
		return nil, err
	}
	if len(cfg.codecOpts) > 0 {
		return nil, errors.New("sdkplugin: WithCodecOptions applies to New only")
	}
	if len(cfg.nexusPeers) > 0 {
		return nil, errors.New("sdkplugin: WithNexusPeers applies to New only")
	}
	hc := cfg.httpClient
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	headers, modifiers := cfg.headers, cfg.modify
	modify := func(r *http.Request) error {
		for name, values := range headers {
			for _, v := range values {
				r.Header.Add(name, v)
			}
		}
		for _, fn := range modifiers {
			if err := fn(r); err != nil {
				return fmt.Errorf("modify codec endpoint request: %w", err)
			}
		}
		return nil
	}
	return newPlugin(cfg, newRemoteFactory(strings.TrimRight(endpoint, "/"), *hc, modify))
}

func newPlugin(cfg *config, f *codecFactory) (*Plugin, error) {
	p := &Plugin{codecs: f, namespace: cfg.namespace}
	sp, err := temporal.NewSimplePlugin(temporal.SimplePluginOptions{
		Name:                      PluginName,
		ConfigureClient:           p.configureClient,
		ConfigureWorkflowReplayer: p.configureReplayer,
	})
	if err != nil {
		return nil, fmt.Errorf("sdkplugin: create sdk plugin: %w", err)
	}
	p.SimplePlugin = sp
	return p, nil
}

// configureClient binds the converters to the client's own namespace, so one plugin value can serve clients of
// several namespaces. A data converter the user already set stays in charge of serialization; ours wraps it. A
// failure converter the user set is replaced: failure text must be sealed, which only ours guarantees.
func (p *Plugin) configureClient(_ context.Context, o client.PluginConfigureClientOptions) error {
	ns := o.ClientOptions.Namespace
	if ns == "" {
		ns = client.DefaultNamespace
	}
	dc := p.newDataConverter(o.ClientOptions.DataConverter, ns)
	o.ClientOptions.DataConverter = dc
	o.ClientOptions.FailureConverter = newFailureConverter(dc)
	// Dial options only apply to clients that dial; one made with NewClientFromExisting keeps its connection's.
	o.ClientOptions.ConnectionOptions.DialOptions = append(o.ClientOptions.ConnectionOptions.DialOptions,
		grpc.WithChainUnaryInterceptor(p.queryInterceptor))
	return nil
}

// configureReplayer uses the plugin's namespace: the replayer has no client and runs every history under a
// placeholder namespace that the codec ignores.
func (p *Plugin) configureReplayer(_ context.Context, o worker.PluginConfigureWorkflowReplayerOptions) error {
	dc := p.newDataConverter(o.WorkflowReplayerOptions.DataConverter, p.namespace)
	o.WorkflowReplayerOptions.DataConverter = dc
	o.WorkflowReplayerOptions.FailureConverter = newFailureConverter(dc)
	return nil
}

// PayloadCodec returns the plugin's payload codec for namespace, for use in a converter.PayloadCodec chain or
// converter.NewPayloadCodecHTTPHandler. It follows the SDK's serialization context like the data converter does.
func (p *Plugin) PayloadCodec(namespace string) converter.PayloadCodec {
	return p.codecs.forNamespace(p.orDefault(namespace))
}

// DataConverter returns a data converter that seals payloads for namespace over the SDK's default data converter.
// The plugin installs the same thing on clients by itself; this is for code that converts payloads outside a
// client, such as reading a history fetched with another client.
func (p *Plugin) DataConverter(namespace string) converter.DataConverter {
	return p.newDataConverter(nil, p.orDefault(namespace))
}

// FailureConverter returns a failure converter that moves failure messages and stack traces into encoded
// attributes sealed for namespace.
func (p *Plugin) FailureConverter(namespace string) converter.FailureConverter {
	return newFailureConverter(p.DataConverter(namespace))
}

func (p *Plugin) orDefault(namespace string) string {
	if namespace == "" {
		return p.namespace
	}
	return namespace
}

func (p *Plugin) newDataConverter(parent converter.DataConverter, namespace string) converter.DataConverter {
	if parent == nil {
		parent = converter.GetDefaultDataConverter()
	}
	return converter.NewCodecDataConverter(parent, p.codecs.forNamespace(namespace))
}
