package main

import (
	"errors"
	"time"

	"github.com/spf13/pflag"

	"github.com/blindfold-dev/blindfold/keys/kekplugin"
)

// pluginFlags configure --kek plugin: a KEK served by a separate process (keys/kekplugin, docs/kek-plugin.md).
type pluginFlags struct {
	address    string
	caCert     string
	clientCert string
	clientKey  string
	serverName string
	timeout    time.Duration
}

const kekPluginHelp = `
  plugin a KEK plugin: a separate process that wraps keysets with the key
         service it fronts (GCP KMS, Azure Key Vault, an in-house service),
         reached at --kek-plugin-address: a unix socket (unix:///run/blindfold/kek.sock,
         recommended, mode 0600) or a loopback host:port; a remote address
         needs TLS (--kek-plugin-ca). The plugin sees plaintext keysets: run it
         next to Blindfold. Keysets stay in <key-dir>/scopes. The protocol and
         an example plugin: docs/kek-plugin.md, examples/kekplugin.`

func (p *pluginFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&p.address, "kek-plugin-address", envOr("BLINDFOLD_KEK_PLUGIN_ADDRESS", ""), "KEK plugin address for --kek plugin: unix:///path/to.sock or loopback host:port (env BLINDFOLD_KEK_PLUGIN_ADDRESS)")
	fs.StringVar(&p.caCert, "kek-plugin-ca", "", "PEM CA bundle that verifies the KEK plugin; turns on TLS to it")
	fs.StringVar(&p.clientCert, "kek-plugin-client-cert", "", "PEM client certificate for mutual TLS to the KEK plugin")
	fs.StringVar(&p.clientKey, "kek-plugin-client-key", "", "PEM private key of --kek-plugin-client-cert")
	fs.StringVar(&p.serverName, "kek-plugin-server-name", "", "TLS server name to verify in the plugin's certificate, when it differs from the address")
	fs.DurationVar(&p.timeout, "kek-plugin-timeout", kekplugin.DefaultTimeout, "timeout of each KEK plugin call")
}

func (p *pluginFlags) validate() error {
	if p.address == "" {
		return errors.New("--kek plugin needs --kek-plugin-address (unix:///path/to.sock or 127.0.0.1:PORT)")
	}
	if (p.clientCert == "") != (p.clientKey == "") {
		return errors.New("--kek-plugin-client-cert and --kek-plugin-client-key go together")
	}
	if p.timeout <= 0 {
		return errors.New("--kek-plugin-timeout must be positive")
	}
	return nil
}

func (p *pluginFlags) config() kekplugin.Config {
	return kekplugin.Config{
		Address: p.address,
		TLS:     kekplugin.TLS{CACert: p.caCert, ClientCert: p.clientCert, ClientKey: p.clientKey, ServerName: p.serverName},
		Timeout: p.timeout,
	}
}
