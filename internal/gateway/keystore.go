package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/keys/vault"
	"github.com/blindfold-dev/blindfold/keys/vaultkv"
)

// StoreKind names where wrapped keysets and shred tombstones are kept.
type StoreKind string

// The key stores.
const (
	// StoreDir is the key directory's scopes/ folder: one machine, or replicas sharing a volume.
	StoreDir StoreKind = "dir"
	// StoreVaultKV is a Vault KV version 2 folder shared by every replica, updated with check-and-set: replicas keep no key state.
	StoreVaultKV StoreKind = "vault-kv"
)

// ParseStoreKind checks a --key-store value.
func ParseStoreKind(s string) (StoreKind, error) {
	switch k := StoreKind(s); k {
	case StoreDir, StoreVaultKV:
		return k, nil
	case "":
		return StoreDir, nil
	}
	return "", fmt.Errorf("--key-store %q: want dir or vault-kv", s)
}

// Remote reports whether the store answers over the network (then aged keysets are reloaded off the payload path).
func (k StoreKind) Remote() bool { return k == StoreVaultKV }

func (c KeysConfig) storeKind() StoreKind {
	if c.Store == "" {
		return StoreDir
	}
	return c.Store
}

// Where describes the key store for messages, e.g. "dir /var/lib/blindfold/keys" or "vault-kv secret/blindfold/scopes".
func (c KeysConfig) Where() string {
	if c.storeKind() == StoreVaultKV {
		mount, path := c.VaultKV.Mount, c.VaultKV.Path
		if mount == "" {
			mount = vaultkv.DefaultMount
		}
		if path == "" {
			path = vaultkv.DefaultPath
		}
		return "vault-kv " + mount + "/" + path
	}
	return "dir " + c.Dir
}

// openStore opens the key store cfg names. A Vault KV store uses the Vault Transit KEK's client when there is one (one login for
// both), and otherwise logs in to Vault with cfg.Vault's address and credentials just for the store; Keys.Close ends that login.
func openStore(ctx context.Context, cfg KeysConfig, k *Keys, log *slog.Logger) (keys.Store, error) {
	if cfg.storeKind() != StoreVaultKV {
		return keys.NewDirStore(cfg.Dir), nil
	}
	var client *vaultapi.Client
	if k.Vault != nil {
		client = k.Vault.Client()
	} else {
		vc := cfg.Vault
		if vc.Logger == nil {
			vc.Logger = log
		}
		conn, err := vault.NewKEK(ctx, vc) // only its login and token renewal are used; it wraps nothing
		if err != nil {
			return nil, fmt.Errorf("key store vault-kv: %w", err)
		}
		k.storeConn = conn
		client = conn.Client()
	}
	kc := cfg.VaultKV
	if kc.Logger == nil {
		kc.Logger = log
	}
	s, err := vaultkv.New(client, kc)
	if err != nil {
		return nil, err
	}
	if err := s.Check(ctx); err != nil {
		var re *vaultapi.ResponseError
		if errors.Is(err, vaultkv.ErrNotKVv2) || errors.As(err, &re) {
			return nil, fmt.Errorf("key store: %w", err) // Vault answered: wrong mount or no rights; starting would only fail later
		}
		// Vault did not answer: start anyway, as with the Transit KEK; every payload fails closed until it does.
		log.WarnContext(ctx, "key store not reachable at startup; payloads fail until it is", "store", s.Location(), "error", err)
	}
	return s, nil
}
