package vaultdev

import (
	kv "github.com/hashicorp/vault-plugin-secrets-kv"
	"github.com/hashicorp/vault/builtin/credential/approle"
	"github.com/hashicorp/vault/builtin/logical/transit"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// builtins is the small plugin registry this server ships: Vault's own
// registry (helper/builtinplugins) would link every secrets engine and auth
// method Vault has, which multiplies build time and binary size for nothing.
type builtins struct {
	secrets     map[string]logical.Factory
	credentials map[string]logical.Factory
}

func newBuiltins() *builtins {
	return &builtins{
		secrets:     map[string]logical.Factory{"transit": transit.Factory, "kv": kv.Factory},
		credentials: map[string]logical.Factory{"approle": approle.Factory},
	}
}

func (b *builtins) table(t consts.PluginType) map[string]logical.Factory {
	switch t {
	case consts.PluginTypeSecrets:
		return b.secrets
	case consts.PluginTypeCredential:
		return b.credentials
	default:
		return nil
	}
}

// Contains reports whether name is a builtin plugin of type t.
func (b *builtins) Contains(name string, t consts.PluginType) bool {
	_, ok := b.table(t)[name]
	return ok
}

// Get returns the factory of the builtin plugin name of type t.
func (b *builtins) Get(name string, t consts.PluginType) (func() (interface{}, error), bool) {
	f, ok := b.table(t)[name]
	if !ok {
		return nil, false
	}
	return func() (interface{}, error) { return f, nil }, true
}

// Keys lists the builtin plugins of type t.
func (b *builtins) Keys(t consts.PluginType) []string {
	var names []string
	for name := range b.table(t) {
		names = append(names, name)
	}
	return names
}

// DeprecationStatus reports every shipped builtin as supported.
func (b *builtins) DeprecationStatus(name string, t consts.PluginType) (consts.DeprecationStatus, bool) {
	if b.Contains(name, t) {
		return consts.Supported, true
	}
	return consts.Unknown, false
}

// IsBuiltinEntPlugin is always false: this is the open-source Vault.
func (b *builtins) IsBuiltinEntPlugin(string, consts.PluginType) bool { return false }
