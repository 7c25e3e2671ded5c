package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
	"google.golang.org/protobuf/proto"
)

// ScopeDestroyer is implemented by KEKs that hold a key per scope (the Vault Transit KEK, keys/vault): Shred calls DestroyScope to delete it, which makes
// every copy of the scope's wrapped keyset, backups included, impossible to unwrap. It must succeed for an already deleted key.
type ScopeDestroyer interface {
	DestroyScope(ctx context.Context, scope string) error
}

// Rewrapper is implemented by KEKs that can move a ciphertext to their newest key version without releasing the plaintext (the Vault Transit KEK).
type Rewrapper interface {
	RewrapWithContext(ctx context.Context, ciphertext, associatedData []byte) ([]byte, error)
}

// destroyKEKKey deletes scope's KEK key before the local shred, so that a failure leaves nothing half done: a shred that could not reach
// Vault changes nothing and can be run again. It reports whether a KEK key was deleted.
func (m *Manager) destroyKEKKey(ctx context.Context, scope string) (bool, error) {
	d, ok := m.kek.kek.(ScopeDestroyer)
	if !ok {
		return false, nil
	}
	cur, err := m.store.Load(ctx, scope)
	if err != nil {
		return false, err
	}
	if cur.Keyset == nil && cur.Tombstone == nil {
		return false, fmt.Errorf("%w: %q", ErrScopeNotFound, scope)
	}
	m.kek.calls.Add(1)
	if err := d.DestroyScope(ctx, scope); err != nil {
		return false, fmt.Errorf("shred scope %q: delete its kek key (nothing was shredded; run the shred again): %w", scope, err)
	}
	return true, nil
}

// Rewrap re-encrypts scope's stored keyset under the KEK's newest key version, inside the KEK: the data keys are never unwrapped here.
// It reports whether the stored keyset changed. A scope without a keyset (shredded) is left alone. Run it after rotating the KEK and
// before raising Vault's min_decryption_version. With a KEK that is not a Rewrapper (the local master key, which has no versions) it
// returns ErrRewrapUnsupported.
func (m *Manager) Rewrap(ctx context.Context, scope string) (bool, error) {
	if err := ValidateScope(scope); err != nil {
		return false, err
	}
	rw, ok := m.kek.kek.(Rewrapper)
	if !ok {
		return false, fmt.Errorf("%w: the %T has no key versions; rewrap applies to a Vault Transit KEK", ErrRewrapUnsupported, m.kek.kek)
	}
	changed := false
	err := m.store.Update(ctx, scope, func(cur Stored) (Stored, error) {
		changed = false // a shared store may run this again after losing a check-and-set race
		if cur.Keyset == nil {
			return cur, nil
		}
		var f keysetFile
		if err := json.Unmarshal(cur.Keyset, &f); err != nil || f.Format != keysetFormat || f.Scope != scope {
			return Stored{}, fmt.Errorf("%w: scope %q: not a keyset file of this scope", ErrUnwrap, scope)
		}
		var ek tinkpb.EncryptedKeyset
		if err := proto.Unmarshal(f.Keyset, &ek); err != nil {
			return Stored{}, fmt.Errorf("%w: scope %q: encrypted keyset: %v", ErrUnwrap, scope, err)
		}
		m.kek.calls.Add(1)
		ct, err := rw.RewrapWithContext(ctx, ek.GetEncryptedKeyset(), keysetAD(scope, f.Created))
		if err != nil {
			return Stored{}, fmt.Errorf("rewrap keyset of scope %q: %w", scope, err)
		}
		if slices.Equal(ct, ek.GetEncryptedKeyset()) {
			return cur, nil
		}
		ek.EncryptedKeyset = ct
		if f.Keyset, err = proto.Marshal(&ek); err != nil {
			return Stored{}, fmt.Errorf("rewrap keyset of scope %q: %w", scope, err)
		}
		out, err := json.MarshalIndent(f, "", "  ")
		if err != nil {
			return Stored{}, fmt.Errorf("rewrap keyset of scope %q: %w", scope, err)
		}
		changed = true
		return Stored{Keyset: append(out, '\n'), Tombstone: cur.Tombstone}, nil
	})
	if err != nil {
		return false, err
	}
	if changed {
		m.log.InfoContext(ctx, "scope keyset rewrapped under the newest kek version", "scope", scope)
	}
	return changed, nil
}

// RewrapAll rewraps every scope in the store and returns the scopes whose keyset changed; it continues past failures and joins their errors.
func (m *Manager) RewrapAll(ctx context.Context) ([]string, error) {
	scopes, err := m.store.Scopes(ctx)
	if err != nil {
		return nil, err
	}
	var changed []string
	var errs []error
	for _, s := range scopes {
		ok, err := m.Rewrap(ctx, s)
		if err != nil {
			if errors.Is(err, ErrRewrapUnsupported) {
				return nil, err
			}
			errs = append(errs, err)
			continue
		}
		if ok {
			changed = append(changed, s)
		}
	}
	return changed, errors.Join(errs...)
}
