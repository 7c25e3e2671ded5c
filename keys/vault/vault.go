package vault

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/blindfold-dev/blindfold/keys"
)

// Vault auth methods accepted in Auth.Method.
const (
	AuthToken      = "token"
	AuthAppRole    = "approle"
	AuthKubernetes = "kubernetes"
)

// Defaults of Config.
const (
	DefaultMount             = "transit"
	DefaultKeyPrefix         = "blindfold-"
	DefaultTimeout           = 10 * time.Second
	DefaultKubernetesJWTPath = "/var/run/secrets/kubernetes.io/serviceaccount/token"
)

// Config configures a Vault Transit KEK. Empty fields take the Vault client's environment (VAULT_ADDR, VAULT_TOKEN,
// VAULT_NAMESPACE, VAULT_CACERT, VAULT_CLIENT_CERT, VAULT_CLIENT_KEY, VAULT_TLS_SERVER_NAME) and then the defaults.
type Config struct {
	// Address is Vault's URL, e.g. https://vault.internal:8200; empty means $VAULT_ADDR.
	Address string
	// Mount is the Transit mount path (default "transit").
	Mount string
	// KeyPrefix is prepended to the scope name to name the scope's Transit key (default "blindfold-": scope "payments" → key "blindfold-payments").
	KeyPrefix string
	// Namespace is the Vault Enterprise namespace (X-Vault-Namespace); empty means $VAULT_NAMESPACE or none.
	Namespace string
	// TLS configures the connection to Vault.
	TLS TLS
	// Auth says how to get a Vault token.
	Auth Auth
	// CreateKeys lets the KEK create a scope's Transit key (aes256-gcm96, derived) on first use. Without it a missing key is an error
	// wrapping keys.ErrKEKKeyMissing, for deployments where an operator (Terraform, the blindfold CLI) creates keys and proxies may not.
	CreateKeys bool
	// Timeout bounds each Vault request (default DefaultTimeout). The caller's context can end it earlier.
	Timeout time.Duration
	// MaxRetries is how often a request failing with a 5xx or a connection error is retried (default 1; 0 means the default, negative means none).
	MaxRetries int
	// Logger receives token renewal and key lifecycle events; nil discards them.
	Logger *slog.Logger
}

// TLS configures TLS to Vault. Paths are PEM files.
type TLS struct {
	CACert     string // CA bundle that signs Vault's certificate; empty means $VAULT_CACERT or the system roots
	ClientCert string // client certificate for mutual TLS
	ClientKey  string // its private key
	ServerName string // SNI and verification name, when it differs from the address's host
}

// Auth says how the KEK authenticates to Vault.
type Auth struct {
	// Method is AuthToken (default), AuthAppRole or AuthKubernetes.
	Method string
	// Token is the token for the token method; empty means $VAULT_TOKEN, then ~/.vault-token.
	Token string
	// RoleID and SecretID are the AppRole credentials; SecretIDFile, when set, is read instead of SecretID (e.g. a mounted secret).
	RoleID, SecretID, SecretIDFile string
	// Role is the Vault role for Kubernetes auth.
	Role string
	// JWTPath is the service account token for Kubernetes auth (default DefaultKubernetesJWTPath). It is re-read on every login, since kubelet rotates it.
	JWTPath string
	// MountPath is where the auth method is mounted (default "approle" or "kubernetes").
	MountPath string
}

// KEK wraps scope keysets with Vault Transit: one key per scope, named KeyPrefix+scope, of type aes256-gcm96 with derived=true.
// The associated data the Manager passes (it names the scope) is the derivation context, so a keyset wrapped for one scope
// does not unwrap under another, and the wrapped keyset can be re-wrapped inside Vault (Transit's rewrap endpoint takes a context
// but, in Vault 1.14, no associated_data). The key to use is found from the associated data, so one KEK serves every scope.
type KEK struct {
	client *vaultapi.Client
	mount  string
	prefix string
	create bool
	addr   string
	log    *slog.Logger

	mu      sync.Mutex
	ensured map[string]time.Time // transit keys checked (exist, derived, never leave Vault) in this process, and when

	stopAuth context.CancelFunc
	authDone chan struct{}
}

var (
	_ keys.KEK            = (*KEK)(nil)
	_ keys.ScopeDestroyer = (*KEK)(nil)
	_ keys.Rewrapper      = (*KEK)(nil)
)

// NewKEK connects to Vault and logs in. With AppRole or Kubernetes auth it keeps the token renewed (and logs in again when
// it can no longer be renewed) until Close; a renewable static token is renewed too.
func NewKEK(ctx context.Context, cfg Config) (*KEK, error) {
	vc := vaultapi.DefaultConfig() // reads VAULT_ADDR, VAULT_CACERT, VAULT_CLIENT_CERT, … from the environment
	if vc.Error != nil {
		return nil, fmt.Errorf("vault config: %w", vc.Error)
	}
	if cfg.Address != "" {
		vc.Address = cfg.Address
	}
	if cfg.TLS != (TLS{}) {
		// ConfigureTLS replaces what DefaultConfig read from the environment: keep the environment for the fields not given.
		t := &vaultapi.TLSConfig{
			CACert:        orDefault(cfg.TLS.CACert, os.Getenv(vaultapi.EnvVaultCACert)),
			CAPath:        os.Getenv(vaultapi.EnvVaultCAPath),
			ClientCert:    orDefault(cfg.TLS.ClientCert, os.Getenv(vaultapi.EnvVaultClientCert)),
			ClientKey:     orDefault(cfg.TLS.ClientKey, os.Getenv(vaultapi.EnvVaultClientKey)),
			TLSServerName: orDefault(cfg.TLS.ServerName, os.Getenv(vaultapi.EnvVaultTLSServerName)),
		}
		if err := vc.ConfigureTLS(t); err != nil {
			return nil, fmt.Errorf("vault tls: %w", err)
		}
	}
	vc.Timeout = cfg.Timeout
	if vc.Timeout <= 0 {
		vc.Timeout = DefaultTimeout
	}
	switch {
	case cfg.MaxRetries < 0:
		vc.MaxRetries = 0
	case cfg.MaxRetries == 0:
		vc.MaxRetries = 1
	default:
		vc.MaxRetries = cfg.MaxRetries
	}
	// Short waits: a refresh blocks the request that triggered it, and a cached keyset serves meanwhile anyway.
	vc.MinRetryWait, vc.MaxRetryWait = 50*time.Millisecond, 250*time.Millisecond
	c, err := vaultapi.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	if cfg.Namespace != "" {
		c.SetNamespace(cfg.Namespace)
	}
	k := &KEK{
		client:  c,
		mount:   strings.Trim(cfg.Mount, "/"),
		prefix:  cfg.KeyPrefix,
		create:  cfg.CreateKeys,
		addr:    vc.Address,
		log:     cfg.Logger,
		ensured: map[string]time.Time{},
	}
	if k.mount == "" {
		k.mount = DefaultMount
	}
	if k.prefix == "" {
		k.prefix = DefaultKeyPrefix
	}
	if k.log == nil {
		k.log = slog.New(slog.DiscardHandler)
	}
	if err := k.startAuth(ctx, cfg.Auth); err != nil {
		return nil, err
	}
	return k, nil
}

// Close stops token renewal. It does not revoke the token.
func (k *KEK) Close() error {
	if k.stopAuth != nil {
		k.stopAuth()
		<-k.authDone
	}
	return nil
}

// Address is the Vault address in use.
func (k *KEK) Address() string { return k.addr }

// Client is the KEK's Vault client, logged in and with its token renewed until Close. The shared key store (keys/vaultkv)
// uses it, so one Vault login serves both.
func (k *KEK) Client() *vaultapi.Client { return k.client }

// KeyName is the name of scope's Transit key.
func (k *KEK) KeyName(scope string) string { return k.prefix + scope }

// EncryptWithContext wraps plaintext with the Transit key of the scope named in associatedData, creating the key first when allowed.
func (k *KEK) EncryptWithContext(ctx context.Context, plaintext, associatedData []byte) ([]byte, error) {
	scope, err := keys.ScopeOfKeysetAD(associatedData)
	if err != nil {
		return nil, fmt.Errorf("vault kek: %w", err)
	}
	name := k.KeyName(scope)
	if err := k.ensureKey(ctx, name, k.create); err != nil {
		return nil, err
	}
	s, err := k.client.Logical().WriteWithContext(ctx, k.mount+"/encrypt/"+name, map[string]any{
		"plaintext": base64.StdEncoding.EncodeToString(plaintext),
		"context":   base64.StdEncoding.EncodeToString(associatedData),
	})
	if err != nil {
		if errors.Is(k.classify(err, name), keys.ErrKEKKeyMissing) {
			k.forget(name)
		}
		return nil, k.opError("encrypt", name, err)
	}
	ct, err := stringField(s, "ciphertext")
	if err != nil {
		return nil, k.opError("encrypt", name, err)
	}
	return []byte(ct), nil
}

// DecryptWithContext unwraps ciphertext with the Transit key of the scope named in associatedData.
// A rejected ciphertext (other scope, tampered, below min_decryption_version) wraps keys.ErrUnwrap; a deleted key wraps keys.ErrKEKKeyMissing;
// anything else (Vault unreachable, sealed, permission denied) is an error naming Vault.
func (k *KEK) DecryptWithContext(ctx context.Context, ciphertext, associatedData []byte) ([]byte, error) {
	scope, err := keys.ScopeOfKeysetAD(associatedData)
	if err != nil {
		return nil, fmt.Errorf("vault kek: %w", err)
	}
	name := k.KeyName(scope)
	if err := k.ensureKey(ctx, name, false); err != nil {
		return nil, err
	}
	s, err := k.client.Logical().WriteWithContext(ctx, k.mount+"/decrypt/"+name, map[string]any{
		"ciphertext": string(ciphertext),
		"context":    base64.StdEncoding.EncodeToString(associatedData),
	})
	if err != nil {
		return nil, k.opError("decrypt", name, err)
	}
	pt64, err := stringField(s, "plaintext")
	if err != nil {
		return nil, k.opError("decrypt", name, err)
	}
	pt, err := base64.StdEncoding.DecodeString(pt64)
	if err != nil {
		return nil, k.opError("decrypt", name, fmt.Errorf("plaintext is not base64: %w", err))
	}
	return pt, nil
}

// RewrapWithContext re-encrypts ciphertext under the newest version of its Transit key, inside Vault: the wrapped keyset is never
// decrypted outside Vault. It returns ciphertext unchanged in meaning; errors are classified as in DecryptWithContext.
func (k *KEK) RewrapWithContext(ctx context.Context, ciphertext, associatedData []byte) ([]byte, error) {
	scope, err := keys.ScopeOfKeysetAD(associatedData)
	if err != nil {
		return nil, fmt.Errorf("vault kek: %w", err)
	}
	name := k.KeyName(scope)
	if err := k.ensureKey(ctx, name, false); err != nil {
		return nil, err
	}
	s, err := k.client.Logical().WriteWithContext(ctx, k.mount+"/rewrap/"+name, map[string]any{
		"ciphertext": string(ciphertext),
		"context":    base64.StdEncoding.EncodeToString(associatedData),
	})
	if err != nil {
		return nil, k.opError("rewrap", name, err)
	}
	ct, err := stringField(s, "ciphertext")
	if err != nil {
		return nil, k.opError("rewrap", name, err)
	}
	if v, ok := transitVersion(ct); ok {
		if old, ok := transitVersion(string(ciphertext)); ok && old == v {
			return ciphertext, nil // already under the newest version: keep the stored bytes
		}
	}
	return []byte(ct), nil
}

// transitVersion returns the key version prefix of a Transit ciphertext ("vault:v3:…" → "v3").
func transitVersion(ct string) (string, bool) {
	parts := strings.SplitN(ct, ":", 3)
	if len(parts) != 3 || parts[0] != "vault" || !strings.HasPrefix(parts[1], "v") {
		return "", false
	}
	return parts[1], true
}

// KeyInfo describes a scope's Transit key.
type KeyInfo struct {
	Name                 string
	Type                 string
	Derived              bool
	LatestVersion        int
	MinDecryptionVersion int
	DeletionAllowed      bool
	// Exportable and AllowPlaintextBackup let the key's material leave Vault (transit/export, transit/backup). Transit cannot
	// turn either off again; the KEK refuses such keys (ErrKeyLeavesVault), since deleting them would no longer shred.
	Exportable           bool
	AllowPlaintextBackup bool
}

// ErrKeyLeavesVault: a scope's Transit key is exportable or allows plaintext backup, so copies of it may exist outside Vault and
// deleting it (a shred) would not make the scope's data unreadable. The KEK refuses to wrap or unwrap with such a key.
var ErrKeyLeavesVault = errors.New("vault transit key can leave vault")

// keyCheckInterval is how long a key's checked settings are trusted before they are read again; an operator who makes a key
// exportable afterwards is noticed within it. Checks happen only with KEK calls, which the Manager's cache keeps rare.
const keyCheckInterval = time.Minute

// TransitKey reads scope's Transit key; a missing key wraps keys.ErrKEKKeyMissing.
func (k *KEK) TransitKey(ctx context.Context, scope string) (KeyInfo, error) {
	if err := keys.ValidateScope(scope); err != nil {
		return KeyInfo{}, err
	}
	return k.readKey(ctx, k.KeyName(scope))
}

// RotateScopeKey adds a new version to scope's Transit key and returns it. New wraps use it; older versions keep unwrapping until
// SetMinDecryptionVersion raises the floor. Stored keysets move to the new version with Manager.Rewrap.
func (k *KEK) RotateScopeKey(ctx context.Context, scope string) (int, error) {
	if err := keys.ValidateScope(scope); err != nil {
		return 0, err
	}
	name := k.KeyName(scope)
	if _, err := k.client.Logical().WriteWithContext(ctx, k.mount+"/keys/"+name+"/rotate", nil); err != nil {
		return 0, k.opError("rotate", name, err)
	}
	info, err := k.readKey(ctx, name)
	if err != nil {
		return 0, err
	}
	k.log.InfoContext(ctx, "vault transit key rotated", "scope", scope, "key", name, "version", info.LatestVersion)
	return info.LatestVersion, nil
}

// SetMinDecryptionVersion makes ciphertext of scope's Transit key versions below v fail to unwrap (with keys.ErrUnwrap).
// Run Manager.Rewrap on the scope first, or its stored keyset becomes unreadable.
func (k *KEK) SetMinDecryptionVersion(ctx context.Context, scope string, v int) error {
	if err := keys.ValidateScope(scope); err != nil {
		return err
	}
	name := k.KeyName(scope)
	if _, err := k.client.Logical().WriteWithContext(ctx, k.mount+"/keys/"+name+"/config", map[string]any{"min_decryption_version": v}); err != nil {
		return k.opError("configure", name, err)
	}
	k.log.WarnContext(ctx, "vault transit key min_decryption_version raised", "scope", scope, "key", name, "min_decryption_version", v)
	return nil
}

// DestroyScope deletes scope's Transit key with all its versions (setting deletion_allowed first). Every keyset it wrapped,
// including copies in backups, can never be unwrapped again. A key that is already gone is not an error.
func (k *KEK) DestroyScope(ctx context.Context, scope string) error {
	if err := keys.ValidateScope(scope); err != nil {
		return err
	}
	name := k.KeyName(scope)
	k.forget(name)
	_, err := k.client.Logical().WriteWithContext(ctx, k.mount+"/keys/"+name+"/config", map[string]any{"deletion_allowed": true})
	if err != nil {
		if errors.Is(k.classify(err, name), keys.ErrKEKKeyMissing) || isStatus(err, http.StatusNotFound) {
			return nil
		}
		return k.opError("allow deletion of", name, err)
	}
	if _, err := k.client.Logical().DeleteWithContext(ctx, k.mount+"/keys/"+name); err != nil {
		return k.opError("delete", name, err)
	}
	k.log.WarnContext(ctx, "vault transit key deleted", "scope", scope, "key", name, "vault", k.addr)
	return nil
}

func (k *KEK) forget(name string) {
	k.mu.Lock()
	delete(k.ensured, name)
	k.mu.Unlock()
}

// ensureKey checks that name exists, is derived and can never leave Vault (not exportable, no plaintext backup), creating it
// when create is set; a check holds for keyCheckInterval. Transit's encrypt endpoint would otherwise create a missing key itself
// for any token with create rights, bypassing CreateKeys.
func (k *KEK) ensureKey(ctx context.Context, name string, create bool) error {
	k.mu.Lock()
	at, ok := k.ensured[name]
	k.mu.Unlock()
	if ok && time.Since(at) < keyCheckInterval {
		return nil
	}
	info, err := k.readKey(ctx, name)
	if errors.Is(err, keys.ErrKEKKeyMissing) && create {
		_, err = k.client.Logical().WriteWithContext(ctx, k.mount+"/keys/"+name, map[string]any{
			"type":    "aes256-gcm96",
			"derived": true,
		})
		if err != nil {
			return k.opError("create", name, err)
		}
		k.log.InfoContext(ctx, "vault transit key created", "key", name, "vault", k.addr)
		info, err = k.readKey(ctx, name)
	}
	if err != nil {
		return err
	}
	if !info.Derived {
		k.forget(name)
		return fmt.Errorf("vault transit key %q at %s/%s is not derived: it would ignore the scope context; create it with derived=true", name, k.addr, k.mount)
	}
	for _, bad := range []struct {
		on      bool
		setting string
	}{{info.Exportable, "exportable"}, {info.AllowPlaintextBackup, "allow_plaintext_backup"}} {
		if bad.on {
			k.forget(name)
			k.log.ErrorContext(ctx, "vault transit key refused: its material can leave vault, so a shred would not hold", "key", name, "setting", bad.setting)
			return fmt.Errorf("%w: vault transit key %q at %s/%s has %s=true: copies of it may exist outside Vault, so deleting it would not shred the scope; Transit cannot turn this off, so use a new key that never had it",
				ErrKeyLeavesVault, name, k.addr, k.mount, bad.setting)
		}
	}
	k.mu.Lock()
	k.ensured[name] = time.Now()
	k.mu.Unlock()
	return nil
}

func (k *KEK) readKey(ctx context.Context, name string) (KeyInfo, error) {
	s, err := k.client.Logical().ReadWithContext(ctx, k.mount+"/keys/"+name)
	if err != nil {
		return KeyInfo{}, k.opError("read", name, err)
	}
	if s == nil || s.Data == nil {
		return KeyInfo{}, fmt.Errorf("%w: vault transit key %q at %s/%s", keys.ErrKEKKeyMissing, name, k.addr, k.mount)
	}
	info := KeyInfo{Name: name}
	info.Type, _ = s.Data["type"].(string)
	info.Derived, _ = s.Data["derived"].(bool)
	info.DeletionAllowed, _ = s.Data["deletion_allowed"].(bool)
	info.Exportable, _ = s.Data["exportable"].(bool)
	info.AllowPlaintextBackup, _ = s.Data["allow_plaintext_backup"].(bool)
	info.LatestVersion = intField(s.Data["latest_version"])
	info.MinDecryptionVersion = intField(s.Data["min_decryption_version"])
	return info, nil
}

// classify maps a Vault error to the sentinel the Manager branches on, or nil when it is not one.
func (k *KEK) classify(err error, name string) error {
	var re *vaultapi.ResponseError
	if !errors.As(err, &re) {
		return nil
	}
	msg := strings.ToLower(strings.Join(re.Errors, "; "))
	switch {
	case strings.Contains(msg, "key not found") || strings.Contains(msg, "no existing key named"):
		return keys.ErrKEKKeyMissing
	case re.StatusCode == http.StatusBadRequest:
		// Transit answers 400 for a ciphertext it rejects: authentication failed (other scope, tampering), malformed, or a version
		// below min_decryption_version.
		return keys.ErrUnwrap
	}
	return nil
}

func (k *KEK) opError(op, name string, err error) error {
	detail := err.Error()
	var re *vaultapi.ResponseError
	if errors.As(err, &re) {
		detail = fmt.Sprintf("HTTP %d: %s", re.StatusCode, strings.Join(re.Errors, "; "))
	}
	if s := k.classify(err, name); s != nil {
		return fmt.Errorf("%w: vault transit %s with key %q at %s/%s: %s", s, op, name, k.addr, k.mount, detail)
	}
	return fmt.Errorf("vault transit %s with key %q at %s/%s: %w", op, name, k.addr, k.mount, err)
}

func isStatus(err error, code int) bool {
	var re *vaultapi.ResponseError
	return errors.As(err, &re) && re.StatusCode == code
}

func stringField(s *vaultapi.Secret, field string) (string, error) {
	if s == nil || s.Data == nil {
		return "", fmt.Errorf("empty response")
	}
	v, ok := s.Data[field].(string)
	if !ok || v == "" {
		return "", fmt.Errorf("response has no %s", field)
	}
	return v, nil
}

func intField(v any) int {
	switch n := v.(type) {
	case json.Number:
		i, _ := n.Int64()
		return int(i)
	case float64:
		return int(n)
	case int:
		return n
	case int64:
		return int(n)
	}
	return 0
}
