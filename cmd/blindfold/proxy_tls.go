package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"strings"
)

// The proxy's secrets and TLS material, read from the files its flags name.

func (o *proxyFlags) inboundTLS() (*tls.Config, error) {
	if o.tlsCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("inbound tls: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if o.clientCA != "" {
		pool, err := loadPool(o.clientCA)
		if err != nil {
			return nil, fmt.Errorf("--client-ca: %w", err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

func (o *proxyFlags) upstreamTLSConfig() (*tls.Config, error) {
	if !o.upstreamTLS && o.upstreamCA == "" && o.upstreamCert == "" && o.upstreamServerName == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.upstreamServerName}
	if o.upstreamCA != "" {
		pool, err := loadPool(o.upstreamCA)
		if err != nil {
			return nil, fmt.Errorf("--upstream-ca: %w", err)
		}
		cfg.RootCAs = pool
	}
	if o.upstreamCert != "" {
		cert, err := tls.LoadX509KeyPair(o.upstreamCert, o.upstreamKey)
		if err != nil {
			return nil, fmt.Errorf("upstream client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func (o *proxyFlags) resolveAPIKey() (string, error) {
	if o.apiKeyFile == "" {
		return strings.TrimSpace(o.apiKey), nil
	}
	b, err := os.ReadFile(o.apiKeyFile)
	if err != nil {
		return "", fmt.Errorf("--api-key-file: %w", err)
	}
	k := strings.TrimSpace(string(b))
	if k == "" {
		return "", fmt.Errorf("--api-key-file %s is empty", o.apiKeyFile)
	}
	return k, nil
}
