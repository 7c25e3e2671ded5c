package keys

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tink-crypto/tink-go/v2/keyset"
)

// keysetFormat names the version of a stored scope keyset file.
const keysetFormat = "blindfold-keyset/v1"

// keysetFile is the stored form of a scope keyset: JSON around Tink's binary EncryptedKeyset.
// Created is outside the ciphertext but authenticated: its digest is part of the associated data.
type keysetFile struct {
	Format  string            `json:"format"`
	Scope   string            `json:"scope"`
	Created map[string]string `json:"created"` // 8-hex Tink key id → RFC 3339 UTC
	Keyset  []byte            `json:"keyset"`
}

// KeysetAD is the associated data a Manager wraps scope's keyset with, binding it to its scope and its keys' creation times
// (created maps Tink key ids in hex to RFC 3339 times). Every KEK gets it with each call; a KEK that holds a key per scope finds
// the scope in it with ScopeOfKeysetAD, and its tests build it here.
func KeysetAD(scope string, created map[string]string) []byte { return keysetAD(scope, created) }

// ScopeOfKeysetAD returns the scope named in associated data built by KeysetAD. Anything else, or a scope that is not a valid
// scope name, is an error: a KEK must not pick a key for data that is not a Blindfold keyset.
func ScopeOfKeysetAD(ad []byte) (string, error) {
	const pre, post = keysetFormat + "\x00scope=", "\x00created="
	rest, ok := bytes.CutPrefix(ad, []byte(pre))
	i := bytes.Index(rest, []byte(post))
	if !ok || i < 0 {
		return "", errors.New("associated data does not name a scope (not a blindfold keyset)")
	}
	scope := string(rest[:i])
	if err := ValidateScope(scope); err != nil {
		return "", err
	}
	return scope, nil
}

// keysetAD binds a wrapped keyset to its scope and its creation times.
func keysetAD(scope string, created map[string]string) []byte {
	c, _ := json.Marshal(created) // map keys are sorted: deterministic
	sum := sha256.Sum256(c)
	return []byte(keysetFormat + "\x00scope=" + scope + "\x00created=" + hex.EncodeToString(sum[:]))
}

func (m *Manager) wrap(ctx context.Context, scope string, h *keyset.Handle, created map[string]string) ([]byte, error) {
	var buf bytes.Buffer
	call := &kekCall{kek: m.kek}
	if err := h.WriteWithContext(ctx, keyset.NewBinaryWriter(&buf), call, keysetAD(scope, created)); err != nil {
		if call.err != nil {
			// The KEK did not answer (e.g. Vault down): retryable, like a failed unwrap after the cache TTL. Tink
			// flattens the KEK's error into text, so keep the original for errors.Is.
			return nil, fmt.Errorf("wrap keyset of scope %q: %w: %w", scope, ErrUnavailable, call.err)
		}
		return nil, fmt.Errorf("wrap keyset of scope %q: %w", scope, err)
	}
	out, err := json.MarshalIndent(keysetFile{Format: keysetFormat, Scope: scope, Created: created, Keyset: buf.Bytes()}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode keyset of scope %q: %w", scope, err)
	}
	return append(out, '\n'), nil
}

func (m *Manager) unwrap(ctx context.Context, scope string, data []byte) (*keyset.Handle, map[string]string, error) {
	var f keysetFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, nil, fmt.Errorf("%w: scope %q: keyset file is not valid JSON: %v", ErrUnwrap, scope, err)
	}
	if f.Format != keysetFormat {
		return nil, nil, fmt.Errorf("%w: scope %q: unknown keyset file format %q", ErrUnwrap, scope, printable(f.Format))
	}
	if f.Scope != scope {
		return nil, nil, fmt.Errorf("%w: scope %q: file holds the keyset of scope %q", ErrUnwrap, scope, printable(f.Scope))
	}
	call := &kekCall{kek: m.kek}
	h, err := keyset.ReadWithContext(ctx, keyset.NewBinaryReader(bytes.NewReader(f.Keyset)), call, keysetAD(scope, f.Created))
	switch {
	case err == nil:
	case call.err != nil && !errors.Is(call.err, ErrUnwrap):
		// The KEK did not answer (outage, permission, cancelled): not evidence that the file is bad.
		return nil, nil, fmt.Errorf("unwrap keyset of scope %q: kek: %w", scope, call.err)
	default:
		return nil, nil, fmt.Errorf("%w: scope %q (wrong master key or KEK, tampered file, or keyset of another scope): %v", ErrUnwrap, scope, err)
	}
	return h, f.Created, nil
}

// kekCall records the KEK's own error of one wrap or unwrap, which Tink's keyset functions only pass on as text.
type kekCall struct {
	kek KEK
	err error
}

func (c *kekCall) EncryptWithContext(ctx context.Context, pt, ad []byte) ([]byte, error) {
	out, err := c.kek.EncryptWithContext(ctx, pt, ad)
	c.err = err
	return out, err
}

func (c *kekCall) DecryptWithContext(ctx context.Context, ct, ad []byte) ([]byte, error) {
	out, err := c.kek.DecryptWithContext(ctx, ct, ad)
	c.err = err
	return out, err
}

// keysetFileIDs returns the key ids a keyset file claims without unwrapping it, so a shred also works when the keyset no longer unwraps.
func keysetFileIDs(data []byte) []string {
	var f keysetFile
	if json.Unmarshal(data, &f) != nil {
		return nil
	}
	ids := make([]string, 0, len(f.Created))
	for id := range f.Created {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// tombstone is the stored record of a scope's shreds. It is plain JSON: deleting it cannot bring keys back, only make the error less specific.
type tombstone struct {
	Format string        `json:"format"`
	Scope  string        `json:"scope"`
	Shreds []shredRecord `json:"shreds"`
}

type shredRecord struct {
	At     time.Time `json:"at"`
	KeyIDs []string  `json:"key_ids"` // full key ids, e.g. "default/1a2b3c4d"
}

const tombstoneFormat = "blindfold-tombstone/v1"

func parseTombstone(scope string, data []byte) (*tombstone, error) {
	if data == nil {
		return nil, nil
	}
	var t tombstone
	if err := json.Unmarshal(data, &t); err != nil || t.Format != tombstoneFormat || len(t.Shreds) == 0 {
		return nil, fmt.Errorf("scope %q: unreadable shred tombstone; refusing to use the scope", scope)
	}
	return &t, nil
}

// destroyedIDs returns the Tink key ids recorded as shredded.
func (t *tombstone) destroyedIDs() map[uint32]struct{} {
	out := map[uint32]struct{}{}
	if t == nil {
		return out
	}
	for _, s := range t.Shreds {
		for _, id := range s.KeyIDs {
			if _, n, err := ParseKeyID(id); err == nil {
				out[n] = struct{}{}
			}
		}
	}
	return out
}

// nowString records a key's creation time in RFC 3339 with milliseconds: timed rotation compares ages against periods of a
// few seconds in tests, and whole seconds would make a primary look up to a second older than it is. Readers parse it with
// time.RFC3339, which accepts the fraction, so files written with whole seconds read the same.
func nowString(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }
