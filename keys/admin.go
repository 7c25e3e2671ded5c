package keys

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/tink-crypto/tink-go/v2/keyset"

	"github.com/blindfold-dev/blindfold/codec"
)

// CreateOptions tunes Create.
type CreateOptions struct {
	// AllowAfterShred re-creates a scope that was shredded. Its old key ids stay destroyed; the new keyset gets new ids.
	AllowAfterShred bool
}

// Create makes a new keyset with one primary key for scope and returns that key's id.
// It fails with ErrScopeExists if the scope has a keyset, and with an error wrapping codec.ErrKeyDestroyed if it was shredded, unless opts.AllowAfterShred.
func (m *Manager) Create(ctx context.Context, scope string, opts CreateOptions) (string, error) {
	if err := ValidateScope(scope); err != nil {
		return "", err
	}
	var id string
	err := m.store.Update(ctx, scope, func(cur Stored) (Stored, error) {
		if cur.Keyset != nil {
			return Stored{}, fmt.Errorf("%w: %q", ErrScopeExists, scope)
		}
		ts, err := parseTombstone(scope, cur.Tombstone)
		if err != nil {
			return Stored{}, err
		}
		if ts != nil && !opts.AllowAfterShred {
			return Stored{}, fmt.Errorf("%w: scope %q was shredded at %s; re-creating it needs AllowAfterShred (keys init --allow-after-shred)",
				codec.ErrKeyDestroyed, scope, ts.Shreds[len(ts.Shreds)-1].At.Format(time.RFC3339))
		}
		km := keyset.NewManager()
		tid, err := m.addPrimary(km, ts.destroyedIDs())
		if err != nil {
			return Stored{}, fmt.Errorf("create keyset of scope %q: %w", scope, err)
		}
		h, err := km.Handle()
		if err != nil {
			return Stored{}, fmt.Errorf("create keyset of scope %q: %w", scope, err)
		}
		data, err := m.wrap(ctx, scope, h, map[string]string{fmt.Sprintf("%08x", tid): nowString(m.now())})
		if err != nil {
			return Stored{}, err
		}
		id = KeyID(scope, tid)
		return Stored{Keyset: data, Tombstone: cur.Tombstone}, nil
	})
	if err != nil {
		return "", err
	}
	m.evict(scope)
	m.log.InfoContext(ctx, "scope keyset created", "scope", scope, "key_id", id, "after_shred", opts.AllowAfterShred)
	return id, nil
}

// Rotate adds a new primary key to scope's keyset and returns its id. Older keys stay for opening.
// Other processes start sealing with the new key at their next refresh (at most RefreshAfter later), and open it at once (an unknown id triggers a refresh).
func (m *Manager) Rotate(ctx context.Context, scope string) (string, error) {
	id, _, err := m.rotate(ctx, scope, 0)
	return id, err
}

// rotate adds a new primary to scope's keyset, unless maxAge > 0 and the primary is younger than maxAge (then it returns the
// primary's id and false). The age is checked under the store's lock, so replicas rotating on a timer rotate once per period.
func (m *Manager) rotate(ctx context.Context, scope string, maxAge time.Duration) (string, bool, error) {
	if err := ValidateScope(scope); err != nil {
		return "", false, err
	}
	var id string
	rotated := false
	err := m.store.Update(ctx, scope, func(cur Stored) (Stored, error) {
		rotated = false // a shared store may run this again after losing a check-and-set race
		ts, err := parseTombstone(scope, cur.Tombstone)
		if err != nil {
			return Stored{}, err
		}
		if cur.Keyset == nil {
			if ts != nil {
				return Stored{}, fmt.Errorf("%w: scope %q was shredded", codec.ErrKeyDestroyed, scope)
			}
			return Stored{}, fmt.Errorf("%w: %q", ErrScopeNotFound, scope)
		}
		h, created, err := m.unwrap(ctx, scope, cur.Keyset)
		if err != nil {
			return Stored{}, err
		}
		if maxAge > 0 {
			if p, perr := h.Primary(); perr == nil {
				c, terr := time.Parse(time.RFC3339, created[fmt.Sprintf("%08x", p.KeyID())])
				if terr == nil && m.now().Sub(c) < maxAge {
					id = KeyID(scope, p.KeyID())
					return cur, nil
				}
			}
		}
		km := keyset.NewManagerFromHandle(h)
		tid, err := m.addPrimary(km, ts.destroyedIDs())
		if err != nil {
			return Stored{}, fmt.Errorf("rotate scope %q: %w", scope, err)
		}
		if h, err = km.Handle(); err != nil {
			return Stored{}, fmt.Errorf("rotate scope %q: %w", scope, err)
		}
		if created == nil {
			created = map[string]string{}
		}
		created[fmt.Sprintf("%08x", tid)] = nowString(m.now())
		data, err := m.wrap(ctx, scope, h, created)
		if err != nil {
			return Stored{}, err
		}
		id, rotated = KeyID(scope, tid), true
		return Stored{Keyset: data, Tombstone: cur.Tombstone}, nil
	})
	if err != nil {
		return "", false, err
	}
	if !rotated {
		return id, false, nil
	}
	m.evict(scope)
	m.log.InfoContext(ctx, "scope keyset rotated", "scope", scope, "primary_key_id", id)
	return id, true, nil
}

// addPrimary adds a key from the template as the new primary, never reusing a shredded id (a reused id would turn "destroyed" into "opens").
func (m *Manager) addPrimary(km *keyset.Manager, destroyed map[uint32]struct{}) (uint32, error) {
	for range 16 {
		tid, err := km.Add(m.template)
		if err != nil {
			return 0, err
		}
		if _, gone := destroyed[tid]; gone {
			if err := km.Delete(tid); err != nil {
				return 0, err
			}
			continue
		}
		return tid, km.SetPrimary(tid)
	}
	return 0, fmt.Errorf("no free key id")
}

// Shred destroys scope's keyset: the file is overwritten and removed, a tombstone records its key ids, and this process's cache drops the scope.
// Afterwards every key id of the scope fails with an error wrapping codec.ErrKeyDestroyed; other processes notice at their next refresh, at most the cache TTL later.
// Shredding works even when the keyset no longer unwraps. Shredding an already shredded scope does nothing; a scope that never existed is ErrScopeNotFound.
func (m *Manager) Shred(ctx context.Context, scope string) error {
	if err := ValidateScope(scope); err != nil {
		return err
	}
	kekKey, err := m.destroyKEKKey(ctx, scope)
	if err != nil {
		return err
	}
	var ids []string
	err = m.store.Update(ctx, scope, func(cur Stored) (Stored, error) {
		ids = nil // a shared store may run this again after losing a check-and-set race
		ts, err := parseTombstone(scope, cur.Tombstone)
		if err != nil {
			// An unreadable tombstone must not block destroying keys: start a fresh one.
			ts = nil
		}
		if cur.Keyset == nil {
			if ts != nil {
				return cur, nil
			}
			return Stored{}, fmt.Errorf("%w: %q", ErrScopeNotFound, scope)
		}
		for _, tid := range keysetFileIDs(cur.Keyset) {
			ids = append(ids, scope+"/"+tid)
		}
		if ts == nil {
			ts = &tombstone{Format: tombstoneFormat, Scope: scope}
		}
		ts.Shreds = append(ts.Shreds, shredRecord{At: m.now().UTC(), KeyIDs: ids})
		tb, err := json.MarshalIndent(ts, "", "  ")
		if err != nil {
			return Stored{}, err
		}
		return Stored{Keyset: nil, Tombstone: append(tb, '\n')}, nil
	})
	m.evict(scope)
	if err != nil {
		return err
	}
	// Audit point: policy's hash-chained audit log should record this act too (the CLI and proxy hold the audit writer).
	m.log.WarnContext(ctx, "scope shredded", "scope", scope, "key_ids", ids, "kek_key_deleted", kekKey)
	return nil
}

// ScopeInfo describes one scope for listing.
type ScopeInfo struct {
	Scope string
	// State is "active", "shredded" (no keyset, only a tombstone) or "unreadable" (Err says why).
	State string
	// Primary is the id of the key new payloads are sealed with.
	Primary string
	// Keys are the scope's keys, oldest first.
	Keys []KeyInfo
	// Destroyed are the key ids shredded so far.
	Destroyed []string
	// ShreddedAt is the time of the last shred, zero if never.
	ShreddedAt time.Time
	// Err explains an unreadable scope.
	Err error
}

// KeyInfo describes one key of a scope.
type KeyInfo struct {
	ID      string
	Created time.Time
	Primary bool
}

// List describes every scope in the store. It unwraps each keyset (one KEK call per scope), bypassing the cache.
func (m *Manager) List(ctx context.Context) ([]ScopeInfo, error) {
	scopes, err := m.store.Scopes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]ScopeInfo, 0, len(scopes))
	for _, scope := range scopes {
		out = append(out, m.describe(ctx, scope))
	}
	return out, nil
}

func (m *Manager) describe(ctx context.Context, scope string) ScopeInfo {
	info := ScopeInfo{Scope: scope, State: "active"}
	stored, err := m.store.Load(ctx, scope)
	if err != nil {
		info.State, info.Err = "unreadable", err
		return info
	}
	ts, err := parseTombstone(scope, stored.Tombstone)
	if err != nil {
		info.State, info.Err = "unreadable", err
		return info
	}
	if ts != nil {
		for _, s := range ts.Shreds {
			info.Destroyed = append(info.Destroyed, s.KeyIDs...)
		}
		info.ShreddedAt = ts.Shreds[len(ts.Shreds)-1].At
	}
	if stored.Keyset == nil {
		info.State = "shredded"
		return info
	}
	h, created, err := m.unwrap(ctx, scope, stored.Keyset)
	if err != nil {
		info.State, info.Err = "unreadable", err
		return info
	}
	p, err := h.Primary()
	if err != nil {
		info.State, info.Err = "unreadable", err
		return info
	}
	info.Primary = KeyID(scope, p.KeyID())
	for i := 0; i < h.Len(); i++ {
		e, err := h.Entry(i)
		if err != nil {
			continue
		}
		hexID := fmt.Sprintf("%08x", e.KeyID())
		c, _ := time.Parse(time.RFC3339, created[hexID])
		info.Keys = append(info.Keys, KeyInfo{ID: scope + "/" + hexID, Created: c, Primary: e.IsPrimary()})
	}
	slices.SortStableFunc(info.Keys, func(a, b KeyInfo) int { return a.Created.Compare(b.Created) })
	return info
}
