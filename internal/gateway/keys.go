package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/keys/kekplugin"
	"github.com/blindfold-dev/blindfold/keys/vault"
	"github.com/blindfold-dev/blindfold/keys/vaultkv"
)

// KEKKind names a key-encryption key provider.
type KEKKind string

// The key-encryption key providers.
const (
	// KEKLocal is the master key in <Dir>/master.key or $BLINDFOLD_MASTER_KEY.
	KEKLocal KEKKind = "local"
	// KEKVault is Vault Transit: each scope's keyset is wrapped by its own Transit key.
	KEKVault KEKKind = "vault"
	// KEKPlugin is a KEK plugin: a separate process answering the protocol of keys/kekplugin (GCP KMS, Azure Key Vault,
	// an in-house key service) on a unix socket or loopback port.
	KEKPlugin KEKKind = "plugin"
)

// ParseKEKKind checks a --kek value.
func ParseKEKKind(s string) (KEKKind, error) {
	switch k := KEKKind(s); k {
	case KEKLocal, KEKVault, KEKPlugin:
		return k, nil
	case "":
		return KEKLocal, nil
	}
	return "", fmt.Errorf("--kek %q: want local, vault or plugin", s)
}

// Remote reports whether the provider answers over the network, so a slow or absent provider must never delay a payload.
func (k KEKKind) Remote() bool { return k == KEKVault || k == KEKPlugin }

// DefaultBackgroundRefresh bounds a background reload of a cached keyset when the KEK is remote.
const DefaultBackgroundRefresh = 5 * time.Second

// KeysConfig says where the keys are and how the key manager behaves. Every command opens its keys from one of these
// through OpenKeys, so the same flags give the same manager everywhere.
type KeysConfig struct {
	// Dir is the key directory: the scopes' wrapped keysets, and the master key for KEKLocal.
	Dir string
	// KEK is the key-encryption key provider (default KEKLocal).
	KEK KEKKind
	// Vault configures KEKVault, and the Vault connection of StoreVaultKV.
	Vault vault.Config
	// Plugin configures KEKPlugin.
	Plugin kekplugin.Config
	// Store is where wrapped keysets and tombstones live (default StoreDir, under Dir).
	Store StoreKind
	// VaultKV configures StoreVaultKV.
	VaultKV vaultkv.Config
	// CreateMasterKey lets KEKLocal create a missing master key (blindfold dev and keys init). Serving commands in
	// production never create one: a wrong --key-dir must fail, not mint fresh, useless keys.
	CreateMasterKey bool
	// AutoCreate creates a scope's keyset on its first sealing call instead of failing.
	AutoCreate bool
	// RotateEvery adds a new primary data key to every scope this often (0: never). Only a serving gateway rotates.
	RotateEvery time.Duration
	// CacheTTL is how long an unwrapped keyset serves without a successful reload (0: keys.DefaultCacheTTL). It bounds
	// how long a KEK outage is survived and how long a shred takes to reach other replicas.
	CacheTTL time.Duration
	// RefreshAfter is the age after which a cached keyset is reloaded (0: half the TTL).
	RefreshAfter time.Duration
	// MinRefreshInterval limits reloads of one scope triggered by unknown key ids or failed refreshes (0:
	// keys.DefaultMinRefreshInterval).
	MinRefreshInterval time.Duration
}

// KeyPlan is the key manager's behaviour as derived from a KeysConfig: one rule for every command, comparable in tests.
type KeyPlan struct {
	AutoCreate bool
	// BackgroundRefresh > 0 reloads aged keysets off the payload path, bounded by this timeout (remote KEKs).
	BackgroundRefresh time.Duration
	CacheTTL          time.Duration
	// RefreshAfter and MinRefreshInterval: 0 takes the keys package's defaults.
	RefreshAfter       time.Duration
	MinRefreshInterval time.Duration
	RotateEvery        time.Duration
}

// Plan derives the key manager's behaviour from c.
func (c KeysConfig) Plan() KeyPlan {
	p := KeyPlan{AutoCreate: c.AutoCreate, CacheTTL: c.CacheTTL, RefreshAfter: c.RefreshAfter,
		MinRefreshInterval: c.MinRefreshInterval, RotateEvery: c.RotateEvery}
	if p.CacheTTL == 0 {
		p.CacheTTL = keys.DefaultCacheTTL
	}
	if c.kind().Remote() || c.storeKind().Remote() {
		p.BackgroundRefresh = DefaultBackgroundRefresh
	}
	return p
}

func (c KeysConfig) kind() KEKKind {
	if c.KEK == "" {
		return KEKLocal
	}
	return c.KEK
}

func (c KeysConfig) validate() error {
	if c.Dir == "" {
		return errors.New("key directory is empty")
	}
	if _, err := ParseKEKKind(string(c.KEK)); err != nil {
		return err
	}
	if _, err := ParseStoreKind(string(c.Store)); err != nil {
		return err
	}
	if c.RotateEvery < 0 || c.CacheTTL < 0 || c.RefreshAfter < 0 || c.MinRefreshInterval < 0 {
		return errors.New("key rotation period, cache ttl and refresh intervals must not be negative")
	}
	return nil
}

// Keys is an open key manager with the key-encryption key behind it.
type Keys struct {
	// Manager serves and manages the data keys; it is the codec's keyring.
	Manager *keys.Manager
	// Vault is the Vault Transit KEK when the provider is KEKVault (for rewrap and KEK rotation), else nil.
	Vault *vault.KEK
	// Plugin is the KEK plugin client when the provider is KEKPlugin, else nil.
	Plugin *kekplugin.KEK
	// Store is where the manager keeps wrapped keysets and tombstones (for copying between stores).
	Store keys.Store
	kek   keys.KEK
	// storeConn is the Vault login of a StoreVaultKV when the KEK is not Vault's.
	storeConn *vault.KEK
}

// KEK returns the key-encryption key the manager wraps keysets with.
func (k *Keys) KEK() keys.KEK { return k.kek }

// Close releases the KEK (Vault token renewal, the plugin connection). The manager must not be used afterwards.
func (k *Keys) Close() {
	if k.Vault != nil {
		_ = k.Vault.Close()
	}
	if k.Plugin != nil {
		_ = k.Plugin.Close()
	}
	if k.storeConn != nil {
		_ = k.storeConn.Close()
	}
}

// OpenKeys opens the key manager that cfg describes. log receives key lifecycle events (never key material).
func OpenKeys(ctx context.Context, cfg KeysConfig, log *slog.Logger) (*Keys, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("open keys: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	plan := cfg.Plan()
	opts := []keys.Option{keys.WithAutoCreate(plan.AutoCreate), keys.WithLogger(log), keys.WithCacheTTL(plan.CacheTTL)}
	if plan.BackgroundRefresh > 0 {
		opts = append(opts, keys.WithBackgroundRefresh(plan.BackgroundRefresh))
	}
	if plan.RefreshAfter > 0 {
		opts = append(opts, keys.WithRefreshAfter(plan.RefreshAfter))
	}
	if plan.MinRefreshInterval > 0 {
		opts = append(opts, keys.WithMinRefreshInterval(plan.MinRefreshInterval))
	}
	k := &Keys{}
	switch cfg.kind() {
	case KEKVault:
		vc := cfg.Vault
		if vc.Logger == nil {
			vc.Logger = log
		}
		v, err := vault.NewKEK(ctx, vc)
		if err != nil {
			return nil, fmt.Errorf("open keys: %w", err)
		}
		k.Vault, k.kek = v, v
	case KEKPlugin:
		// Dial checks the plugin answers Health, so a wrong address or a plugin that is not running fails the start
		// with an error naming it, instead of the first payload.
		p, err := kekplugin.Dial(ctx, cfg.Plugin)
		if err != nil {
			return nil, fmt.Errorf("open keys: %w", err)
		}
		log.InfoContext(ctx, "kek plugin connected", "address", p.Address(), "plugin", p.Info().Name, "version", p.Info().Version)
		k.Plugin, k.kek = p, p
	default:
		local, err := keys.LoadMasterKey(cfg.Dir, cfg.CreateMasterKey)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no master key in %s (create one with: blindfold keys init --key-dir %s): %w", cfg.Dir, cfg.Dir, err)
		}
		if err != nil {
			return nil, fmt.Errorf("open keys in %s: %w", cfg.Dir, err)
		}
		k.kek = local
	}
	store, err := openStore(ctx, cfg, k, log)
	if err != nil {
		k.Close()
		return nil, fmt.Errorf("open keys: %w", err)
	}
	k.Store = store
	m, err := keys.NewManager(store, k.kek, opts...)
	if err != nil {
		k.Close()
		return nil, fmt.Errorf("open keys in %s: %w", cfg.Dir, err)
	}
	k.Manager = m
	return k, nil
}
