// Package codectest provides an in-memory codec.Keyring over Tink keysets, for tests of packages that use the codec before (or without) the keys package.
//
// Keys live only in memory and are never wrapped by a KEK: use it in tests only.
package codectest

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"

	"github.com/blindfold-dev/blindfold/codec"
)

// Keyring is an in-memory codec.Keyring with one Tink keyset (scope) per namespace.
// A namespace without a keyset gets a fresh keyset of the keyring's template (AES-256-GCM for NewKeyring) the first time a
// key is asked for it.
// Key ids are "<namespace>/<Tink key id as 8 hex digits>". It is safe for concurrent use.
type Keyring struct {
	mu        sync.Mutex
	scopes    map[string]*scope // by namespace
	destroyed map[string]bool   // namespaces whose scope was shredded
	template  *tinkpb.KeyTemplate
}

type scope struct {
	primary    string
	primaryKey codec.Key            // keys[primary]
	keys       map[string]codec.Key // by key id
	handle     *keyset.Handle
}

var _ codec.Keyring = (*Keyring)(nil)

// NewKeyring returns an empty Keyring whose new keys are AES-256-GCM.
func NewKeyring() *Keyring {
	return NewKeyringWithTemplate(aead.AES256GCMKeyTemplate())
}

// NewKeyringWithTemplate returns an empty Keyring whose new keys (new keysets, Rotate) come from template, e.g.
// aead.XAES256GCM160BitNonceKeyTemplate(), the keys package's default.
func NewKeyringWithTemplate(template *tinkpb.KeyTemplate) *Keyring {
	return &Keyring{scopes: map[string]*scope{}, destroyed: map[string]bool{}, template: template}
}

// SetKeyset makes h the keyset of namespace, replacing any earlier one. Its primary key seals; all its enabled keys open.
func (k *Keyring) SetKeyset(namespace string, h *keyset.Handle) error {
	s, err := newScope(namespace, h)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.scopes[namespace] = s
	delete(k.destroyed, namespace)
	return nil
}

// Rotate adds a new primary key of the keyring's template to namespace's keyset, keeping the old keys for opening, and returns the new key's id.
func (k *Keyring) Rotate(namespace string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.destroyed[namespace] {
		return "", fmt.Errorf("rotate namespace %q: %w", namespace, codec.ErrKeyDestroyed)
	}
	s, err := k.scopeLocked(namespace)
	if err != nil {
		return "", err
	}
	m := keyset.NewManagerFromHandle(s.handle)
	id, err := m.Add(k.template)
	if err != nil {
		return "", fmt.Errorf("rotate namespace %q: %w", namespace, err)
	}
	if err := m.SetPrimary(id); err != nil {
		return "", fmt.Errorf("rotate namespace %q: %w", namespace, err)
	}
	h, err := m.Handle()
	if err != nil {
		return "", fmt.Errorf("rotate namespace %q: %w", namespace, err)
	}
	ns, err := newScope(namespace, h)
	if err != nil {
		return "", err
	}
	k.scopes[namespace] = ns
	return ns.primary, nil
}

// Destroy shreds namespace's keyset: every payload sealed under it fails with codec.ErrKeyDestroyed from now on, and no new key is created for it.
func (k *Keyring) Destroy(namespace string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.scopes, namespace)
	k.destroyed[namespace] = true
}

// Keyset returns namespace's keyset handle, creating it if needed.
func (k *Keyring) Keyset(namespace string) (*keyset.Handle, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.destroyed[namespace] {
		return nil, fmt.Errorf("keyset of namespace %q: %w", namespace, codec.ErrKeyDestroyed)
	}
	s, err := k.scopeLocked(namespace)
	if err != nil {
		return nil, err
	}
	return s.handle, nil
}

// SealingKey implements codec.Keyring. The keyring has one scope per namespace, named like it: a Target naming any other
// scope is refused with an error wrapping codec.ErrUnknownKey rather than sealed under the namespace's own keys.
func (k *Keyring) SealingKey(_ context.Context, t codec.Target) (codec.Key, error) {
	namespace := t.Namespace
	if t.Scope != "" && t.Scope != namespace {
		return codec.Key{}, fmt.Errorf("sealing key of namespace %q: scope %q: %w (codectest keeps one scope per namespace)", namespace, t.Scope, codec.ErrUnknownKey)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	// A shredded namespace has no scope (Destroy deletes it, and only SetKeyset adds it back), so one lookup answers the
	// common case.
	if s, ok := k.scopes[namespace]; ok {
		return s.primaryKey, nil
	}
	if k.destroyed[namespace] {
		return codec.Key{}, fmt.Errorf("sealing key of namespace %q: %w", namespace, codec.ErrKeyDestroyed)
	}
	s, err := k.scopeLocked(namespace)
	if err != nil {
		return codec.Key{}, err
	}
	return s.primaryKey, nil
}

// OpeningKey implements codec.Keyring. Only keys of namespace's own keyset are found.
func (k *Keyring) OpeningKey(_ context.Context, namespace, id string) (codec.Key, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if s, ok := k.scopes[namespace]; ok { // never the scope of a shredded namespace (see SealingKey)
		if key, ok := s.keys[id]; ok {
			return key, nil
		}
		return codec.Key{}, fmt.Errorf("key %q: %w", id, codec.ErrUnknownKey)
	}
	if k.destroyed[namespace] {
		return codec.Key{}, fmt.Errorf("key %q: %w", id, codec.ErrKeyDestroyed)
	}
	return codec.Key{}, fmt.Errorf("key %q: %w", id, codec.ErrUnknownKey)
}

func (k *Keyring) scopeLocked(namespace string) (*scope, error) {
	if s, ok := k.scopes[namespace]; ok {
		return s, nil
	}
	h, err := keyset.NewHandle(k.template)
	if err != nil {
		return nil, fmt.Errorf("new keyset for namespace %q: %w", namespace, err)
	}
	s, err := newScope(namespace, h)
	if err != nil {
		return nil, err
	}
	k.scopes[namespace] = s
	return s, nil
}

// newScope builds one single-key AEAD per enabled key of h, so a key id opens only what that key sealed.
func newScope(namespace string, h *keyset.Handle) (*scope, error) {
	s := &scope{keys: map[string]codec.Key{}, handle: h}
	for i := range h.Len() {
		e, err := h.Entry(i)
		if err != nil {
			return nil, fmt.Errorf("keyset of namespace %q: entry %d: %w", namespace, i, err)
		}
		if e.KeyStatus() != keyset.Enabled {
			continue
		}
		m := keyset.NewManager()
		kid, err := m.AddKey(e.Key())
		if err != nil {
			return nil, fmt.Errorf("keyset of namespace %q: key %d: %w", namespace, e.KeyID(), err)
		}
		if err := m.SetPrimary(kid); err != nil {
			return nil, fmt.Errorf("keyset of namespace %q: key %d: %w", namespace, e.KeyID(), err)
		}
		single, err := m.Handle()
		if err != nil {
			return nil, fmt.Errorf("keyset of namespace %q: key %d: %w", namespace, e.KeyID(), err)
		}
		a, err := aead.New(single)
		if err != nil {
			return nil, fmt.Errorf("keyset of namespace %q: key %d: %w", namespace, e.KeyID(), err)
		}
		id := KeyID(namespace, e.KeyID())
		s.keys[id] = codec.Key{ID: id, AEAD: a}
		if e.IsPrimary() {
			s.primary = id
		}
	}
	if s.primary == "" {
		return nil, fmt.Errorf("keyset of namespace %q has no enabled primary key", namespace)
	}
	s.primaryKey = s.keys[s.primary]
	return s, nil
}

// KeyID is the key id Keyring gives the Tink key tinkID of namespace.
func KeyID(namespace string, tinkID uint32) string {
	return fmt.Sprintf("%s/%08x", namespace, tinkID)
}

// ReadCleartextKeyset parses a cleartext Tink keyset in JSON, as test fixtures store it.
func ReadCleartextKeyset(js []byte) (*keyset.Handle, error) {
	h, err := insecurecleartextkeyset.Read(keyset.NewJSONReader(bytes.NewReader(js)))
	if err != nil {
		return nil, fmt.Errorf("read cleartext keyset: %w", err)
	}
	return h, nil
}

// WriteCleartextKeyset serialises h as cleartext JSON, for test fixtures.
func WriteCleartextKeyset(h *keyset.Handle) ([]byte, error) {
	var buf bytes.Buffer
	if err := insecurecleartextkeyset.Write(h, keyset.NewJSONWriter(&buf)); err != nil {
		return nil, fmt.Errorf("write cleartext keyset: %w", err)
	}
	return buf.Bytes(), nil
}
