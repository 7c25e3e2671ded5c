package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/keys/vault"
)

// kekFlags are the "blindfold keys" flags that choose and configure the key-encryption key.
type kekFlags struct {
	kind       string
	addr       string
	mount      string
	prefix     string
	namespace  string
	auth       string
	token      string
	roleID     string
	secretID   string
	secretFile string
	k8sRole    string
	jwtPath    string
	authMount  string
	caCert     string
	clientCert string
	clientKey  string
	serverName string
	noCreate   bool
	timeout    time.Duration
	plugin     pluginFlags
	store      *storeFlags
}

// keysKEK holds the flags of the most recently built "keys" command tree (there is one per process, or one per test run).
var keysKEK = &kekFlags{}

const kekHelp = `
Key-encryption key (--kek):
  local  (default) the master key in <key-dir>/master.key or $BLINDFOLD_MASTER_KEY.
  vault  Vault Transit: each scope's keyset is wrapped by its own Transit key
         <prefix><scope> (aes256-gcm96, derived, the scope as context), created
         on first use. Keysets are still stored in <key-dir>/scopes; only their
         wrapping moves to Vault (with --key-store vault-kv they move too). Shred also deletes the scope's Transit key, so
         backups of the key directory become useless too. Settings come from the
         --vault-* flags, else VAULT_ADDR, VAULT_TOKEN, VAULT_NAMESPACE,
         VAULT_CACERT, VAULT_CLIENT_CERT, VAULT_CLIENT_KEY. See docs/vault.md.` + kekPluginHelp

func addKEKFlags(cmd *cobra.Command) *kekFlags {
	f := &kekFlags{}
	fs := cmd.PersistentFlags()
	fs.StringVar(&f.kind, "kek", envOr("BLINDFOLD_KEK", "local"), "key-encryption key: local, vault or plugin (env BLINDFOLD_KEK)")
	fs.StringVar(&f.addr, "vault-addr", "", "Vault address (default $VAULT_ADDR)")
	fs.StringVar(&f.mount, "vault-mount", vault.DefaultMount, "Vault Transit mount path")
	fs.StringVar(&f.prefix, "vault-key-prefix", vault.DefaultKeyPrefix, "Transit key name prefix; a scope's key is <prefix><scope>")
	fs.StringVar(&f.namespace, "vault-namespace", "", "Vault Enterprise namespace (default $VAULT_NAMESPACE)")
	fs.StringVar(&f.auth, "vault-auth", vault.AuthToken, "Vault auth method: token, approle or kubernetes")
	fs.StringVar(&f.token, "vault-token", "", "Vault token for --vault-auth token (default $VAULT_TOKEN, then ~/.vault-token)")
	fs.StringVar(&f.roleID, "vault-role-id", os.Getenv("VAULT_ROLE_ID"), "AppRole role_id (env VAULT_ROLE_ID)")
	fs.StringVar(&f.secretID, "vault-secret-id", os.Getenv("VAULT_SECRET_ID"), "AppRole secret_id (env VAULT_SECRET_ID; prefer --vault-secret-id-file)")
	fs.StringVar(&f.secretFile, "vault-secret-id-file", "", "file holding the AppRole secret_id")
	fs.StringVar(&f.k8sRole, "vault-k8s-role", "", "Vault role for --vault-auth kubernetes")
	fs.StringVar(&f.jwtPath, "vault-k8s-jwt", vault.DefaultKubernetesJWTPath, "service account token file for --vault-auth kubernetes")
	fs.StringVar(&f.authMount, "vault-auth-mount", "", "mount path of the auth method (default approle or kubernetes)")
	fs.StringVar(&f.caCert, "vault-cacert", "", "PEM CA bundle to verify Vault (default $VAULT_CACERT)")
	fs.StringVar(&f.clientCert, "vault-client-cert", "", "PEM client certificate for mutual TLS to Vault")
	fs.StringVar(&f.clientKey, "vault-client-key", "", "PEM private key of --vault-client-cert")
	fs.StringVar(&f.serverName, "vault-tls-server-name", "", "TLS server name to verify, when it differs from the address")
	fs.BoolVar(&f.noCreate, "vault-no-create", false, "never create Transit keys (they must exist)")
	fs.DurationVar(&f.timeout, "vault-timeout", vault.DefaultTimeout, "timeout of each Vault request")
	f.plugin.register(fs)
	f.store = addStoreFlags(fs)
	return f
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func (f *kekFlags) vault() bool { return f.kind == "vault" }

func (f *kekFlags) validate() error {
	k, err := gateway.ParseKEKKind(f.kind)
	if err != nil {
		return err
	}
	if k == gateway.KEKPlugin {
		if err := f.plugin.validate(); err != nil {
			return err
		}
	}
	return f.store.validate()
}

func (f *kekFlags) vaultConfig() vault.Config {
	return vault.Config{
		Address:   f.addr,
		Mount:     f.mount,
		KeyPrefix: f.prefix,
		Namespace: f.namespace,
		TLS:       vault.TLS{CACert: f.caCert, ClientCert: f.clientCert, ClientKey: f.clientKey, ServerName: f.serverName},
		Auth: vault.Auth{
			Method: f.auth, Token: f.token,
			RoleID: f.roleID, SecretID: f.secretID, SecretIDFile: f.secretFile,
			Role: f.k8sRole, JWTPath: f.jwtPath, MountPath: f.authMount,
		},
		CreateKeys: !f.noCreate,
		Timeout:    f.timeout,
	}
}

// keysConfig is the key configuration of a command with these KEK flags over key directory dir.
func (f *kekFlags) keysConfig(dir string, autoCreate bool, rotateEvery time.Duration) gateway.KeysConfig {
	kc := gateway.KeysConfig{Dir: dir, KEK: gateway.KEKKind(f.kind), AutoCreate: autoCreate, RotateEvery: rotateEvery}
	if f.vault() || f.store.vaultKV() {
		kc.Vault = f.vaultConfig() // the Transit KEK, or just the Vault connection of the KV store
	}
	if kc.KEK == gateway.KEKPlugin {
		kc.Plugin = f.plugin.config()
	}
	f.store.apply(&kc)
	return kc
}

// openVaultKeys is openKeys for --kek vault: keysets in dir, wrapped by Vault Transit.
func openVaultKeys(ctx context.Context, dir string) (*keys.Manager, *vault.KEK, error) {
	k, err := gateway.OpenKeys(ctx, keysKEK.keysConfig(dir, false, 0), nil)
	if err != nil {
		return nil, nil, err
	}
	return k.Manager, k.Vault, nil
}

func newKeysRewrapCmd(keyDir *string) *cobra.Command {
	return &cobra.Command{
		Use:   "rewrap [SCOPE...]",
		Short: "Re-wrap stored keysets under the newest Vault Transit key version",
		Long: `Rewrap moves the stored keyset of each SCOPE (every scope if none is given) to
the newest version of its Vault Transit key, using Transit's rewrap endpoint:
the data keys are re-encrypted inside Vault and never leave it in plaintext.
Payloads are not touched; the data keys stay the same.

Run it after "keys rotate-kek" (which rewraps its scope already) and before
raising the Transit key's min_decryption_version.

With the local master key it is not applicable (the master key has no
versions) and fails.`,
		Example: `  blindfold keys rewrap --kek vault
  blindfold keys rewrap payments tenant-42 --kek vault --vault-addr https://vault:8200`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !keysKEK.vault() {
				return fmt.Errorf("%w: rewrap needs --kek vault (the local master key has no versions to rewrap to)", keys.ErrRewrapUnsupported)
			}
			m, kek, err := openVaultKeys(cmd.Context(), *keyDir)
			if err != nil {
				return err
			}
			defer kek.Close()
			out := cmd.OutOrStdout()
			if len(args) == 0 {
				changed, err := m.RewrapAll(cmd.Context())
				for _, s := range changed {
					fmt.Fprintf(out, "scope %s: rewrapped\n", s)
				}
				if err == nil && len(changed) == 0 {
					fmt.Fprintln(out, "every keyset is already wrapped under its newest key version")
				}
				return err
			}
			var errs []error
			for _, s := range args {
				changed, err := m.Rewrap(cmd.Context(), s)
				switch {
				case err != nil:
					errs = append(errs, err)
				case changed:
					fmt.Fprintf(out, "scope %s: rewrapped\n", s)
				default:
					fmt.Fprintf(out, "scope %s: already under the newest key version\n", s)
				}
			}
			return errors.Join(errs...)
		},
	}
}

func newKeysRotateKEKCmd(keyDir *string) *cobra.Command {
	var noRewrap bool
	cmd := &cobra.Command{
		Use:   "rotate-kek SCOPE",
		Short: "Rotate a scope's Vault Transit key and rewrap its keyset",
		Long: `Rotate-kek adds a new version to SCOPE's Vault Transit key, then rewraps the
scope's stored keyset under it (unless --no-rewrap). Keysets wrapped under older
versions, e.g. in backups, stay readable until an operator raises the key's
min_decryption_version:

  vault write transit/keys/<prefix>SCOPE/config min_decryption_version=N

Data keys (DEKs) are rotated with "keys rotate"; this rotates the key that
wraps them.`,
		Example: `  blindfold keys rotate-kek payments --kek vault`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !keysKEK.vault() {
				return errors.New("rotate-kek needs --kek vault; the local master key is not rotated by this command")
			}
			scope := args[0]
			m, kek, err := openVaultKeys(cmd.Context(), *keyDir)
			if err != nil {
				return err
			}
			defer kek.Close()
			v, err := kek.RotateScopeKey(cmd.Context(), scope)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "scope %s: transit key %s now at version %d\n", scope, kek.KeyName(scope), v)
			if noRewrap {
				return nil
			}
			changed, err := m.Rewrap(cmd.Context(), scope)
			if err != nil {
				return err
			}
			if changed {
				fmt.Fprintf(cmd.OutOrStdout(), "scope %s: keyset rewrapped to version %d\n", scope, v)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&noRewrap, "no-rewrap", false, "only rotate the Transit key; leave the stored keyset on its current version")
	return cmd
}
