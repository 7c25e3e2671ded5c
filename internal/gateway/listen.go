package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
)

// The start-up rules for listeners. Whoever can call the proxy reads plaintext, and whoever can call the codec
// endpoint with a token the policy allows does too; so a listener that other machines can reach must say who is
// calling before anything is served. Both checks run in Start before anything is opened or bound, so a refused
// configuration leaves no listener, key or audit log behind.

// proxyClientAuthConfigured reports whether the gRPC proxy authenticates its callers itself: inbound mutual TLS that
// requires and verifies a client certificate against a configured CA bundle (or verifies one when given, with
// ProxyConfig.Auth.ClientCerts refusing calls without), or bearer tokens (ProxyConfig.Auth with
// static tokens or OIDC; every call then needs a valid one). A tls.Config that picks its settings per connection
// (GetConfigForClient) cannot be inspected at start and does not count. Plaintext is refused either way (tokens
// would cross the network in the clear).
func proxyClientAuthConfigured(cfg ProxyConfig) bool {
	if cfg.TLS == nil || cfg.TLS.ClientCAs == nil || cfg.TLS.GetConfigForClient != nil {
		return cfg.TLS != nil && cfg.Auth.tokensConfigured()
	}
	switch {
	case cfg.TLS.ClientAuth == tls.RequireAndVerifyClientCert:
		return true
	case cfg.TLS.ClientAuth == tls.VerifyClientCertIfGiven && cfg.Auth != nil && cfg.Auth.ClientCerts:
		// A certificate is optional at the handshake, but every call without one (and without a token) is refused
		// as unauthenticated by the proxy's authorization.
		return true
	}
	return cfg.Auth.tokensConfigured()
}

// checkListeners refuses a proxy or (production) codec endpoint listener beyond loopback that does not authenticate
// its callers, naming the address, what is missing and how to fix it. With ProxyConfig.InsecureListen (or
// CodecEndpointConfig.InsecureListen for the endpoint's TLS) the proxy starts anyway and log gets a warning: the
// operator says something in front (a mesh enforcing mTLS, an ingress terminating TLS) does the job.
func checkListeners(cfg Config, log *slog.Logger) error {
	var errs []error
	if cfg.Proxy.Upstream != "" {
		errs = append(errs, checkProxyListener(cfg.Proxy, log))
	}
	if ec := cfg.CodecEndpoint; ec != nil && !ec.Dev {
		errs = append(errs, checkCodecEndpointListener(*ec, log))
	}
	return errors.Join(errs...)
}

func checkProxyListener(pc ProxyConfig, log *slog.Logger) error {
	addr := listenAddr(pc.Listen, pc.Listener)
	loop, err := loopbackOnly(addr)
	if err != nil {
		return fmt.Errorf("proxy listener: %w", err)
	}
	if loop {
		return nil
	}
	plaintext := pc.TLS == nil
	clientAuth := proxyClientAuthConfigured(pc)
	switch {
	case !plaintext && clientAuth:
		return nil
	case pc.InsecureListen:
		what := "without client authentication"
		if plaintext {
			what = "in plaintext, without client authentication"
		}
		log.Warn("the proxy listens beyond loopback "+what+" (insecure listen): whoever reaches it reads decrypted payloads "+
			"unless something in front authenticates callers", "listen", addr)
		return nil
	case plaintext:
		return fmt.Errorf("refusing to serve plaintext on non-loopback address %s: whoever reaches it reads decrypted payloads; "+
			"give --tls-cert/--tls-key with --client-ca (mutual TLS), or --insecure-listen if something in front of the proxy "+
			"authenticates callers (e.g. a mesh enforcing mTLS)", addr)
	default:
		return fmt.Errorf("refusing to serve non-loopback address %s without client authentication: TLS alone lets whoever "+
			"reaches it read decrypted payloads; give --client-ca to require client certificates (mutual TLS), or "+
			"--insecure-listen if something in front of the proxy authenticates callers", addr)
	}
}

func checkCodecEndpointListener(ec CodecEndpointConfig, log *slog.Logger) error {
	addr := listenAddr(ec.Listen, ec.Listener)
	if addr == "" && ec.Listener == nil {
		return nil // startCodecEndpoint refuses a missing address with its own message
	}
	loop, err := loopbackOnly(addr)
	if err != nil {
		return fmt.Errorf("codec endpoint listener: %w", err)
	}
	if loop {
		return nil
	}
	var errs []error
	if ec.OIDC == nil && ec.StaticTokensFile == "" {
		// Never waived: without an authenticator no request could be attributed, audited or authorized.
		errs = append(errs, fmt.Errorf("refusing to serve the codec endpoint on non-loopback address %s without an authenticator: "+
			"give --codec-oidc-issuer (with --codec-oidc-audience) or --codec-static-tokens", addr))
	}
	switch {
	case ec.TLSCert != "" && ec.TLSKey != "":
	case ec.InsecureListen && len(errs) == 0:
		log.Warn("the codec endpoint listens beyond loopback without TLS (codec insecure listen): bearer tokens and decoded "+
			"payloads cross the network in the clear unless something in front terminates TLS on a private path", "listen", addr)
	case !ec.InsecureListen:
		errs = append(errs, fmt.Errorf("refusing to serve the codec endpoint on non-loopback address %s without TLS: bearer tokens "+
			"and decoded payloads would cross the network in the clear; give --codec-tls-cert/--codec-tls-key, or "+
			"--codec-insecure-listen if a TLS-terminating ingress in front is the only way in", addr))
	}
	return errors.Join(errs...)
}

// listenAddr is the address a listener binds: the bound one if given, else the configured one.
func listenAddr(listen string, l net.Listener) string {
	if l != nil {
		return l.Addr().String()
	}
	return listen
}

// loopbackOnly reports whether a listen address binds only loopback: "localhost" or a loopback IP. An empty host
// (":7233"), 0.0.0.0 and :: bind every interface, and any other host name may resolve to a reachable address; none of
// them is loopback. An empty address binds every interface on a random port.
func loopbackOnly(addr string) (bool, error) {
	if addr == "" {
		return false, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("address %q: %w", addr, err)
	}
	if strings.EqualFold(host, "localhost") {
		return true, nil
	}
	host, _, _ = strings.Cut(host, "%") // an IPv6 zone ("::1%lo") names the interface, not the address
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback(), nil
}
