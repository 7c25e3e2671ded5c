package main

import (
	"errors"
	"time"

	"github.com/spf13/pflag"

	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/keys/vaultkv"
)

// storeFlags choose where wrapped keysets live (--key-store), for "blindfold keys" and "blindfold proxy" alike: the admin
// commands must work on the store the proxies read.
type storeFlags struct {
	kind       string
	kvMount    string
	kvPath     string
	kvAttempts int
}

const storeHelp = `
Key store (--key-store):
  dir       (default) <key-dir>/scopes: one machine, or replicas sharing a volume.
  vault-kv  a Vault KV version 2 folder, <mount>/<path>/<scope>, shared by every
            replica, updated with check-and-set: replicas keep no key state and
            may all rotate (--rotate-keys-every) at once. It uses the Vault
            connection of --kek vault, or the --vault-* settings with --kek local.
            Shred destroys the earlier KV versions too. See docs/key-store.md.`

func addStoreFlags(fs *pflag.FlagSet) *storeFlags {
	f := &storeFlags{}
	fs.StringVar(&f.kind, "key-store", envOr("BLINDFOLD_KEY_STORE", string(gateway.StoreDir)), "where wrapped keysets live: dir or vault-kv (env BLINDFOLD_KEY_STORE)")
	fs.StringVar(&f.kvMount, "vault-kv-mount", vaultkv.DefaultMount, "KV version 2 mount of --key-store vault-kv")
	fs.StringVar(&f.kvPath, "vault-kv-path", vaultkv.DefaultPath, "folder under --vault-kv-mount holding one secret per scope")
	fs.IntVar(&f.kvAttempts, "vault-kv-max-attempts", vaultkv.DefaultMaxAttempts, "check-and-set attempts of one key store update before it fails")
	return f
}

// The methods accept a nil receiver (a kekFlags built without flags): the directory store.

func (f *storeFlags) vaultKV() bool { return f != nil && f.kind == string(gateway.StoreVaultKV) }

func (f *storeFlags) validate() error {
	if f == nil {
		return nil
	}
	if _, err := gateway.ParseStoreKind(f.kind); err != nil {
		return err
	}
	if f.kvAttempts <= 0 {
		return errors.New("--vault-kv-max-attempts must be positive")
	}
	return nil
}

func (f *storeFlags) apply(kc *gateway.KeysConfig) {
	if f == nil {
		return
	}
	kc.Store = gateway.StoreKind(f.kind)
	if kc.Store == gateway.StoreVaultKV {
		kc.VaultKV = vaultkv.Config{Mount: f.kvMount, Path: f.kvPath, MaxAttempts: f.kvAttempts}
	}
}

// cacheFlags tune how long a proxy serves cached keysets (they bound how fast a shred or a new primary reaches every replica).
type cacheFlags struct {
	ttl, refresh time.Duration
}

func (c *cacheFlags) register(fs *pflag.FlagSet) {
	fs.DurationVar(&c.ttl, "key-cache-ttl", 0, "longest a cached keyset serves without a successful reload: how long a KEK or key store outage is survived (0: 10m)")
	fs.DurationVar(&c.refresh, "key-refresh-after", 0, "age after which a cached keyset is reloaded, off the payload path with Vault: how fast a shred or rotation by another replica is seen (0: half the TTL)")
}

func (c *cacheFlags) validate() error {
	if c.ttl < 0 || c.refresh < 0 {
		return errors.New("--key-cache-ttl and --key-refresh-after must not be negative")
	}
	if c.ttl > 0 && c.refresh > c.ttl {
		return errors.New("--key-refresh-after must not exceed --key-cache-ttl")
	}
	return nil
}

func (c *cacheFlags) apply(kc *gateway.KeysConfig) {
	kc.CacheTTL, kc.RefreshAfter = c.ttl, c.refresh
}
