package xds

import (
	"encoding/json"
	"fmt"
	"path/filepath"
)

// BootstrapConfig describes a grpc-go xDS bootstrap file, the JSON a client or xDS-enabled replica reads from the
// file named by GRPC_XDS_BOOTSTRAP (or inline from GRPC_XDS_BOOTSTRAP_CONFIG).
type BootstrapConfig struct {
	// ServerURI is the control plane's address (a gRPC target, e.g. "blindfold-xds.blindfold.svc:18000"). Required.
	ServerURI string
	// NodeID identifies the client or replica to the control plane (e.g. the pod name). Required.
	NodeID string
	// AdvertiseAddr, for a replica, is the ip:port clients reach it at; with it the replica registers itself with the
	// control plane for as long as its xDS stream lasts.
	AdvertiseAddr string
	// ControlPlaneTLS, if set, secures the connection to the control plane with these PEM files (CA required;
	// certificate and key for mTLS). Nil means plaintext, for a control plane reached over loopback or a mesh.
	ControlPlaneTLS *BootstrapTLS
	// CertDir, if set, declares a certificate provider instance named CertProviderName that watches cert.pem,
	// key.pem and ca.pem in CertDir (e.g. a mounted Kubernetes secret), for ServerTLS pushed by the control plane.
	CertDir string
}

// BootstrapTLS names PEM files for the connection to the control plane.
type BootstrapTLS struct {
	CAFile, CertFile, KeyFile string
}

// CertProviderName is the certificate provider instance Bootstrap declares when CertDir is set; use it as
// ServerTLS.CertProviderInstance.
const CertProviderName = "blindfold"

// Bootstrap renders a bootstrap for grpc-go's xDS client and server.
func Bootstrap(cfg BootstrapConfig) ([]byte, error) {
	if cfg.ServerURI == "" || cfg.NodeID == "" {
		return nil, fmt.Errorf("%w: bootstrap needs a server URI and a node id", ErrConfig)
	}
	creds := []map[string]any{{"type": "insecure"}}
	if t := cfg.ControlPlaneTLS; t != nil {
		if t.CAFile == "" {
			return nil, fmt.Errorf("%w: control plane TLS needs a CA file", ErrConfig)
		}
		c := map[string]any{"ca_certificate_file": t.CAFile}
		if t.CertFile != "" {
			c["certificate_file"] = t.CertFile
			c["private_key_file"] = t.KeyFile
		}
		creds = []map[string]any{{"type": "tls", "config": c}}
	}
	node := map[string]any{"id": cfg.NodeID}
	if cfg.AdvertiseAddr != "" {
		if _, _, err := splitIPPort(cfg.AdvertiseAddr); err != nil {
			return nil, err
		}
		node["metadata"] = map[string]any{AdvertiseMetadataKey: cfg.AdvertiseAddr}
	}
	b := map[string]any{
		"xds_servers": []map[string]any{{
			"server_uri":      cfg.ServerURI,
			"channel_creds":   creds,
			"server_features": []string{"xds_v3"},
		}},
		"node":                                   node,
		"server_listener_resource_name_template": ServerListenerTemplate,
	}
	if cfg.CertDir != "" {
		b["certificate_providers"] = map[string]any{CertProviderName: map[string]any{
			"plugin_name": "file_watcher",
			"config": map[string]any{
				"certificate_file":    filepath.Join(cfg.CertDir, "cert.pem"),
				"private_key_file":    filepath.Join(cfg.CertDir, "key.pem"),
				"ca_certificate_file": filepath.Join(cfg.CertDir, "ca.pem"),
				"refresh_interval":    "60s",
			},
		}}
	}
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("marshal bootstrap: %w", err)
	}
	return append(out, '\n'), nil
}
