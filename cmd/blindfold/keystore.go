package main

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/keys"
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

func newKeysImportDirCmd(keyDir *string) *cobra.Command {
	return &cobra.Command{
		Use:   "import-dir DIR",
		Short: "Copy the wrapped keysets and tombstones of key directory DIR into the key store",
		Long: `Import-dir copies every scope of the key directory DIR (its scopes/ folder:
wrapped keysets and shred tombstones) into the key store the flags name, e.g. the
shared Vault KV store (--key-store vault-kv). The keysets are copied as they are,
still wrapped: use the KEK they were wrapped with (the same --kek, master key or
Transit keys). A scope the store already holds is left alone if it is identical
and reported as a conflict otherwise; nothing is deleted from DIR.`,
		Example: `  blindfold keys import-dir /var/lib/blindfold/keys --key-store vault-kv --kek vault --vault-addr https://vault:8200`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kc := keysKEK.keysConfig(*keyDir, false, 0)
			if kc.Store != gateway.StoreVaultKV {
				return errors.New("import-dir copies into a shared store: pass --key-store vault-kv")
			}
			k, err := gateway.OpenKeys(cmd.Context(), kc, nil)
			if err != nil {
				return err
			}
			defer k.Close()
			src := keys.NewDirStore(args[0])
			scopes, err := src.Scopes(cmd.Context())
			if err != nil {
				return err
			}
			if len(scopes) == 0 {
				return fmt.Errorf("no scopes in %s", filepath.Join(args[0], "scopes"))
			}
			out := cmd.OutOrStdout()
			var errs []error
			for _, scope := range scopes {
				st, err := src.Load(cmd.Context(), scope)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				same := false
				err = k.Store.Update(cmd.Context(), scope, func(cur keys.Stored) (keys.Stored, error) {
					same = false
					if cur.Keyset == nil && cur.Tombstone == nil {
						return st, nil
					}
					if bytes.Equal(cur.Keyset, st.Keyset) && bytes.Equal(cur.Tombstone, st.Tombstone) {
						same = true
						return cur, nil
					}
					return keys.Stored{}, fmt.Errorf("scope %s: %s already holds a different keyset or tombstone; left alone", scope, kc.Where())
				})
				switch {
				case err != nil:
					errs = append(errs, err)
				case same:
					fmt.Fprintf(out, "scope %s: already in %s\n", scope, kc.Where())
				default:
					fmt.Fprintf(out, "scope %s: copied to %s\n", scope, kc.Where())
				}
			}
			return errors.Join(errs...)
		},
	}
}
