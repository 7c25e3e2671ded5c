// Package vaultkv is a shared keys.Store in a HashiCorp Vault KV version 2 engine, so that proxy replicas keep no key state of
// their own: every replica reads the same wrapped keysets and tombstones, and updates them with KV's check-and-set.
//
// Each scope is one KV secret, <mount>/data/<path>/<scope>, holding the wrapped keyset and the shred tombstone (both opaque,
// base64). An Update reads the secret and its version, applies the caller's function and writes the result with cas=<version>;
// when another replica wrote in between, Vault refuses the write and the update starts again from the new version, a bounded
// number of times. The wrapped keyset is useless without the KEK; the store adds no encryption of its own.
//
// KV version 2 keeps earlier versions of a secret. A shred (an update that removes the keyset) therefore destroys every earlier
// version after writing the tombstone, so no older wrapped keyset stays readable through the KV API.
package vaultkv

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/blindfold-dev/blindfold/keys"
)

// Defaults of Config.
const (
	DefaultMount       = "secret"
	DefaultPath        = "blindfold/scopes"
	DefaultMaxAttempts = 10
)

// recordFormat names the layout of a scope's KV secret.
const recordFormat = "blindfold-kv/v1"

// Errors callers branch on.
var (
	// ErrConflict: an Update lost the check-and-set race MaxAttempts times in a row (many replicas updating one scope at once).
	// It also wraps keys.ErrUnavailable: retrying later is the remedy.
	ErrConflict = errors.New("key store update kept conflicting with concurrent updates")
	// ErrNotKVv2: the mount is not a KV version 2 engine (a version 1 engine has no check-and-set, so replicas would lose updates).
	ErrNotKVv2 = errors.New("not a kv version 2 mount")
	// ErrBadRecord: a scope's secret is not a record this store wrote. The store refuses to use it rather than guess.
	ErrBadRecord = errors.New("not a blindfold key store record")
)

// Config configures a Store.
type Config struct {
	// Mount is the KV version 2 mount path (default "secret").
	Mount string
	// Path is the folder under the mount that holds one secret per scope (default "blindfold/scopes").
	Path string
	// MaxAttempts bounds the check-and-set attempts of one Update (default DefaultMaxAttempts).
	MaxAttempts int
	// Logger receives conflict retries and shred cleanup; nil discards them.
	Logger *slog.Logger
}

// Store is a keys.Store in Vault KV version 2. It is safe for concurrent use, also by several processes sharing the same mount and path.
type Store struct {
	client   *vaultapi.Client
	kv       *vaultapi.KVv2
	mount    string
	path     string
	attempts int
	log      *slog.Logger
}

var _ keys.Store = (*Store)(nil)

// New returns a store using client (its address, TLS, namespace and token; a client whose token is renewed elsewhere, such as
// the Vault Transit KEK's, keeps working). It does not contact Vault: call Check at startup.
func New(client *vaultapi.Client, cfg Config) (*Store, error) {
	if client == nil {
		return nil, errors.New("vault kv store: no vault client")
	}
	mount := strings.Trim(cfg.Mount, "/")
	if mount == "" {
		mount = DefaultMount
	}
	path := strings.Trim(cfg.Path, "/")
	if path == "" {
		path = DefaultPath
	}
	for _, p := range []struct{ what, v string }{{"mount", mount}, {"path", path}} {
		for _, seg := range strings.Split(p.v, "/") {
			if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, "\x00?#%*+") {
				return nil, fmt.Errorf("vault kv store: %s %q: want non-empty path segments without . or .. or any of ?#%%*+", p.what, p.v)
			}
		}
	}
	s := &Store{client: client, kv: client.KVv2(mount), mount: mount, path: path, attempts: cfg.MaxAttempts, log: cfg.Logger}
	if s.attempts <= 0 {
		s.attempts = DefaultMaxAttempts
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// Location names the store for messages and logs, e.g. "vault kv https://vault:8200 secret/blindfold/scopes".
func (s *Store) Location() string {
	return fmt.Sprintf("vault kv %s %s/%s", s.client.Address(), s.mount, s.path)
}

// Mount is the KV version 2 mount path in use.
func (s *Store) Mount() string { return s.mount }

// Path is the folder under the mount holding one secret per scope.
func (s *Store) Path() string { return s.path }

// Check makes sure the mount exists, the token may use it and it is a KV version 2 engine, asking Vault the way its own CLI
// does (sys/internal/ui/mounts, which the default policy allows; Vault answers 403 both for a missing mount and for one the
// token has no rights on). When Vault does not know that endpoint it lists the store's folder instead.
func (s *Store) Check(ctx context.Context) error {
	sec, err := s.client.Logical().ReadWithContext(ctx, "sys/internal/ui/mounts/"+s.mount)
	if isStatus(err, http.StatusForbidden) {
		return fmt.Errorf("%s: mount %q does not exist or this token may not use it (enable it with: vault secrets enable -path=%s kv-v2): %w",
			s.Location(), s.mount, s.mount, s.opError("check mount of", "", err))
	}
	if err == nil && sec != nil && sec.Data != nil {
		typ, _ := sec.Data["type"].(string)
		opts, _ := sec.Data["options"].(map[string]any)
		version, _ := opts["version"].(string)
		if (typ != "kv" && typ != "generic") || version != "2" {
			return fmt.Errorf("%w: %s: mount %q is a %q engine, version %q; enable one with: vault secrets enable -path=%s kv-v2",
				ErrNotKVv2, s.Location(), s.mount, typ, version, s.mount)
		}
		return nil
	}
	if _, err := s.Scopes(ctx); err != nil {
		return err
	}
	return nil
}

func (s *Store) secretPath(scope string) (string, error) {
	if err := keys.ValidateScope(scope); err != nil {
		return "", err
	}
	return s.path + "/" + scope, nil
}

// Load reads scope's secret. A scope never written is a zero keys.Stored.
func (s *Store) Load(ctx context.Context, scope string) (keys.Stored, error) {
	p, err := s.secretPath(scope)
	if err != nil {
		return keys.Stored{}, err
	}
	st, _, err := s.read(ctx, scope, p)
	return st, err
}

// read returns scope's contents and the secret's current version (0: never written, which is what cas=0 expects).
func (s *Store) read(ctx context.Context, scope, p string) (keys.Stored, int, error) {
	sec, err := s.kv.Get(ctx, p)
	if errors.Is(err, vaultapi.ErrSecretNotFound) {
		// Never written, or its metadata was deleted: either way check-and-set 0 creates it.
		return keys.Stored{}, 0, nil
	}
	if err != nil {
		return keys.Stored{}, 0, s.opError("read", scope, err)
	}
	version := 0
	if sec.VersionMetadata != nil {
		version = sec.VersionMetadata.Version
	}
	if sec.Data == nil {
		// The current version was deleted (vault kv delete) but not its metadata: empty, and the next write must name its version.
		return keys.Stored{}, version, nil
	}
	st, err := decodeRecord(sec.Data)
	if err != nil {
		return keys.Stored{}, 0, fmt.Errorf("%w: %s, scope %q (version %d): %v", ErrBadRecord, s.Location(), scope, version, err)
	}
	return st, version, nil
}

// Update applies fn to scope's current contents and writes the result with check-and-set. When another process wrote first it
// runs fn again on the newer contents (so fn may run more than once and must only compute its result), up to MaxAttempts times,
// then fails with ErrConflict. A result equal to the current contents writes nothing.
func (s *Store) Update(ctx context.Context, scope string, fn func(cur keys.Stored) (keys.Stored, error)) error {
	p, err := s.secretPath(scope)
	if err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		cur, version, err := s.read(ctx, scope, p)
		if err != nil {
			return err
		}
		next, err := fn(cur)
		if err != nil {
			return err
		}
		if bytes.Equal(next.Keyset, cur.Keyset) && bytes.Equal(next.Tombstone, cur.Tombstone) &&
			(next.Keyset == nil) == (cur.Keyset == nil) && (next.Tombstone == nil) == (cur.Tombstone == nil) {
			return nil
		}
		written, err := s.kv.Put(ctx, p, encodeRecord(next), vaultapi.WithCheckAndSet(version))
		if err == nil {
			return s.afterWrite(ctx, scope, p, cur, next, written)
		}
		if !isCASMismatch(err) {
			if errors.Is(err, vaultapi.ErrSecretNotFound) {
				// KVv2.Put reports a write that returned no version: a KV version 1 engine, which ignores cas.
				return fmt.Errorf("%w: %s: a write returned no version", ErrNotKVv2, s.Location())
			}
			return s.opError("write", scope, err)
		}
		if attempt >= s.attempts {
			return fmt.Errorf("%w: %w: %s, scope %q: %d attempts", ErrConflict, keys.ErrUnavailable, s.Location(), scope, attempt)
		}
		// Another replica won this round: back off a little (jittered, growing) so the racers spread out, then read its write.
		wait := time.Duration(attempt) * (5*time.Millisecond + rand.N(20*time.Millisecond))
		s.log.DebugContext(ctx, "key store check-and-set conflict; retrying", "scope", scope, "attempt", attempt, "version", version)
		select {
		case <-ctx.Done():
			return fmt.Errorf("update scope %q in %s: %w", scope, s.Location(), ctx.Err())
		case <-time.After(wait):
		}
	}
}

// afterWrite finishes an update that removed data: a removed keyset (a shred) destroys every earlier version, which still hold
// it, and a record left with neither keyset nor tombstone is deleted with its metadata.
func (s *Store) afterWrite(ctx context.Context, scope, p string, cur, next keys.Stored, written *vaultapi.KVSecret) error {
	if next.Keyset == nil && next.Tombstone == nil {
		if err := s.kv.DeleteMetadata(ctx, p); err != nil {
			return s.opError("delete", scope, err)
		}
		return nil
	}
	if cur.Keyset == nil || next.Keyset != nil {
		return nil
	}
	v := 0
	if written != nil && written.VersionMetadata != nil {
		v = written.VersionMetadata.Version
	}
	if v <= 1 {
		return nil
	}
	old := make([]int, 0, v-1)
	for i := 1; i < v; i++ {
		old = append(old, i)
	}
	if err := s.kv.Destroy(ctx, p, old); err != nil {
		// The tombstone is written, so every replica refuses the scope; but older versions still hold the wrapped keyset.
		return fmt.Errorf("%s: scope %q: tombstone written, but destroying the %d earlier versions holding the wrapped keyset failed (run the shred again): %w",
			s.Location(), scope, len(old), s.opError("destroy versions of", scope, err))
	}
	s.log.InfoContext(ctx, "key store: earlier versions of a shredded scope destroyed", "scope", scope, "versions", len(old))
	return nil
}

// Scopes lists the scopes that have a secret under the store's folder, sorted. Names that are not valid scopes are skipped.
func (s *Store) Scopes(ctx context.Context) ([]string, error) {
	sec, err := s.client.Logical().ListWithContext(ctx, s.mount+"/metadata/"+s.path)
	if err != nil {
		return nil, s.opError("list", "", err)
	}
	if sec == nil || sec.Data == nil {
		return nil, nil // nothing written yet
	}
	raw, _ := sec.Data["keys"].([]any)
	out := make([]string, 0, len(raw))
	for _, k := range raw {
		name, _ := k.(string)
		if strings.HasSuffix(name, "/") || keys.ValidateScope(name) != nil {
			continue
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out, nil
}

func encodeRecord(st keys.Stored) map[string]any {
	rec := map[string]any{"format": recordFormat}
	if st.Keyset != nil {
		rec["keyset"] = base64.StdEncoding.EncodeToString(st.Keyset)
	}
	if st.Tombstone != nil {
		rec["tombstone"] = base64.StdEncoding.EncodeToString(st.Tombstone)
	}
	return rec
}

func decodeRecord(data map[string]any) (keys.Stored, error) {
	if f, _ := data["format"].(string); f != recordFormat {
		return keys.Stored{}, fmt.Errorf("format %q, want %q", printable(f), recordFormat)
	}
	var st keys.Stored
	for _, f := range []struct {
		name string
		dst  *[]byte
	}{{"keyset", &st.Keyset}, {"tombstone", &st.Tombstone}} {
		v, ok := data[f.name]
		if !ok || v == nil {
			continue
		}
		str, ok := v.(string)
		if !ok {
			return keys.Stored{}, fmt.Errorf("field %s is a %T, want a base64 string", f.name, v)
		}
		b, err := base64.StdEncoding.DecodeString(str)
		if err != nil {
			return keys.Stored{}, fmt.Errorf("field %s is not base64", f.name)
		}
		if b == nil {
			b = []byte{}
		}
		*f.dst = b
	}
	return st, nil
}

func isStatus(err error, code int) bool {
	var re *vaultapi.ResponseError
	return errors.As(err, &re) && re.StatusCode == code
}

func isCASMismatch(err error) bool {
	var re *vaultapi.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusBadRequest {
		return false
	}
	return strings.Contains(strings.Join(re.Errors, "; "), "check-and-set parameter did not match")
}

func (s *Store) opError(op, scope string, err error) error {
	what := "scope " + fmt.Sprintf("%q", scope)
	if scope == "" {
		what = "scopes"
	}
	var re *vaultapi.ResponseError
	if errors.As(err, &re) {
		// Vault's own text spans lines and repeats the URL; keep the status and the reasons, and the error for errors.As.
		return &vaultError{msg: fmt.Sprintf("%s %s in %s: HTTP %d: %s", op, what, s.Location(), re.StatusCode, strings.Join(re.Errors, "; ")), err: err}
	}
	return fmt.Errorf("%s %s in %s: %w", op, what, s.Location(), err)
}

type vaultError struct {
	msg string
	err error
}

func (e *vaultError) Error() string { return e.msg }
func (e *vaultError) Unwrap() error { return e.err }

// printable bounds and quotes a value read from the store before it reaches an error message.
func printable(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}
