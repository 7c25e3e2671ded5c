package keys

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
	"github.com/tink-crypto/tink-go/v2/tink"
	"golang.org/x/sync/singleflight"

	"github.com/blindfold-dev/blindfold/codec"
)

// Defaults of the Manager's options.
const (
	DefaultCacheTTL           = 10 * time.Minute
	DefaultCacheSize          = 1024
	DefaultNegativeCacheSize  = 4096
	DefaultMinRefreshInterval = time.Second
)

// Manager serves the data keys of every scope from a cache, and creates, rotates, lists and shreds scope keysets. It implements codec.Keyring and is safe for concurrent use.
type Manager struct {
	store      Store
	kek        *countingKEK
	autoCreate bool
	ttl        time.Duration
	refresh    time.Duration
	minRefresh time.Duration
	size       int
	negSize    int
	bgRefresh  time.Duration // > 0: age-based refreshes run in the background with this timeout
	template   *tinkpb.KeyTemplate
	log        *slog.Logger
	now        func() time.Time

	mu      sync.Mutex
	entries map[string]*cacheEntry
	// fast holds the same entries as entries (scope → *cacheEntry), for the lookups that need no lock (see fresh):
	// written only with mu held, next to entries.
	fast sync.Map
	lru  list.List // of *cacheEntry holding a keyset or a tombstone, most recently used first
	// negLRU holds the entries of scopes with nothing stored, apart from lru and bounded on its own: key ids in envelopes
	// are chosen by whoever wrote the envelope, so a storm of forged scopes must never push real keysets out of the cache
	// (which would make every payload of theirs a KEK call, and fail them all during a KEK outage).
	negLRU list.List
	gen    uint64 // bumped by every local change of a scope, so loads that raced it are not cached
	loads  singleflight.Group

	hits, misses, refreshes, refreshFailures, fileReads atomic.Uint64
}

var _ codec.Keyring = (*Manager)(nil)

type cacheEntry struct {
	scope        string
	st           *scopeState
	elem         *list.Element
	neg          bool // st.negative(): the entry lives in negLRU
	lastAttempt  time.Time
	lastTargeted time.Time // last reload that was not only due to age (a key id the cache lacked, a missing keyset, an expired TTL)
	// targeting is open while a reload for a key id the cache lacked runs: a lookup of a missing id that the rate limit
	// holds back waits for it, instead of answering from the keyset the reload is replacing.
	targeting chan struct{}
	lastErr   error

	// cur is st, for fresh to read without m.mu; touched is when the entry last moved to the front of its LRU list
	// (Unix nanoseconds of m.now). Both are written with m.mu held.
	cur     atomic.Pointer[scopeState]
	touched atomic.Int64
}

// setState replaces e's state. Callers hold m.mu.
func (e *cacheEntry) setState(st *scopeState) {
	e.st = st
	e.cur.Store(st)
}

// lruTouch is how long a lookup may skip moving its entry to the front of the LRU list (see fresh): an entry in use
// is still moved at least this often, so eviction order is right to within it.
const lruTouch = time.Second

// scopeState is an immutable snapshot of one scope, as loaded.
type scopeState struct {
	scope     string
	hasKeyset bool
	shredded  bool // a tombstone exists
	aead      tink.AEAD
	seal      codec.Key
	primary   uint32
	keyIDs    map[uint32]struct{}
	destroyed map[uint32]struct{}
	kekGone   error // set when the keyset exists but its KEK key was deleted (ErrKEKKeyMissing)
	loadedAt  time.Time
	stored    Stored // as read from the store, so a reload for an unknown key id can tell whether anything changed
}

// goneCause explains a shredded scope whose keyset file is still there.
func (s *scopeState) goneCause() string {
	if s.kekGone == nil {
		return ""
	}
	return " (" + s.kekGone.Error() + ")"
}

// negative reports a scope with nothing stored (no keyset, no tombstone): any key id can name one, so it is cached apart.
func (s *scopeState) negative() bool { return !s.hasKeyset && !s.shredded }

func (s *scopeState) knows(id uint32) bool {
	_, ok := s.keyIDs[id]
	_, gone := s.destroyed[id]
	return ok || gone
}

// Option configures a Manager.
type Option func(*Manager)

// WithClock replaces the Manager's clock (default time.Now), which decides when cached keysets are refreshed and expire. Tests
// and simulations of key service outages use it to move past RefreshAfter and the TTL without waiting.
func WithClock(now func() time.Time) Option { return func(m *Manager) { m.now = now } }

// WithAutoCreate sets whether SealingKey creates a keyset for a scope that never had one (default true, the dev behaviour).
// A shredded scope is never re-created automatically.
func WithAutoCreate(on bool) Option { return func(m *Manager) { m.autoCreate = on } }

// WithCacheTTL sets how long an unwrapped keyset may be served without a successful reload (default DefaultCacheTTL).
// It bounds how long a shred or a KEK revocation takes to reach other processes, and how long a KEK outage is survived.
func WithCacheTTL(d time.Duration) Option { return func(m *Manager) { m.ttl = d } }

// WithRefreshAfter sets the age after which a cached keyset is reloaded on its next use (default half the TTL).
// If that reload fails, the cached keyset keeps serving until the TTL.
func WithRefreshAfter(d time.Duration) Option { return func(m *Manager) { m.refresh = d } }

// WithBackgroundRefresh makes refreshes due to age (past RefreshAfter) run in a background goroutine, bounded by timeout, while the
// request that noticed the age is served from the cache at once. Use it with a remote KEK (Vault): a slow or unreachable Vault then
// never delays a payload, so a Vault outage shorter than the TTL costs neither failures nor latency. Loads a request cannot do
// without (a scope not cached, an unknown key id, an expired TTL) stay synchronous. Off (0) by default.
func WithBackgroundRefresh(timeout time.Duration) Option {
	return func(m *Manager) { m.bgRefresh = timeout }
}

// WithMinRefreshInterval limits reloads of one scope triggered by unknown key ids or failed refreshes (default DefaultMinRefreshInterval).
func WithMinRefreshInterval(d time.Duration) Option { return func(m *Manager) { m.minRefresh = d } }

// WithCacheSize bounds the number of scopes cached (least recently used evicted first; default DefaultCacheSize).
func WithCacheSize(n int) Option { return func(m *Manager) { m.size = n } }

// WithNegativeCacheSize bounds the number of scopes with nothing stored that are remembered, to rate-limit their store
// reads (default DefaultNegativeCacheSize). They are kept apart from WithCacheSize's keysets: lookups of forged or unknown
// scopes, however many, never evict a real scope's keyset.
func WithNegativeCacheSize(n int) Option { return func(m *Manager) { m.negSize = n } }

// WithKeyTemplate sets the Tink template of new data keys (default aead.XAES256GCM160BitNonceKeyTemplate(): XAES-256-GCM,
// whose per-message key derivation leaves no practical limit on messages per key; see docs/format.md). It must produce AEAD
// keys with the TINK output prefix. Keys of other types already in a keyset (AES-256-GCM before v2) still open; rotation adds
// keys of this template.
func WithKeyTemplate(t *tinkpb.KeyTemplate) Option { return func(m *Manager) { m.template = t } }

// WithLogger sets the logger for key lifecycle events and refresh failures. Key material is never logged.
func WithLogger(l *slog.Logger) Option { return func(m *Manager) { m.log = l } }

// NewManager returns a Manager over store whose keysets are wrapped by kek.
func NewManager(store Store, kek KEK, opts ...Option) (*Manager, error) {
	if store == nil || kek == nil {
		return nil, errors.New("keys: store and kek are required")
	}
	m := &Manager{
		autoCreate: true,
		ttl:        DefaultCacheTTL,
		minRefresh: DefaultMinRefreshInterval,
		size:       DefaultCacheSize,
		negSize:    DefaultNegativeCacheSize,
		template:   aead.XAES256GCM160BitNonceKeyTemplate(),
		log:        slog.New(slog.DiscardHandler),
		now:        time.Now,
		entries:    map[string]*cacheEntry{},
	}
	for _, o := range opts {
		o(m)
	}
	if m.ttl <= 0 || m.size <= 0 || m.negSize <= 0 || m.minRefresh < 0 || m.refresh < 0 || m.bgRefresh < 0 || m.template == nil {
		return nil, errors.New("keys: cache TTL and sizes must be positive, refresh intervals not negative, key template set")
	}
	if m.refresh == 0 || m.refresh > m.ttl {
		m.refresh = m.ttl / 2
	}
	m.store = store
	m.kek = &countingKEK{kek: kek}
	return m, nil
}

// OpenLocal returns a Manager for the local key directory dir: master key from $BLINDFOLD_MASTER_KEY or <dir>/master.key (created if missing), keysets in <dir>/scopes.
func OpenLocal(dir string, opts ...Option) (*Manager, error) {
	kek, err := LoadMasterKey(dir, true)
	if err != nil {
		return nil, err
	}
	return NewManager(NewDirStore(dir), kek, opts...)
}

// Scope returns the scope payloads for t are sealed under: t.Scope, or ScopeForNamespace(t.Namespace) when it is empty.
// A scope that is not a valid scope name is an error wrapping ErrInvalidScope.
func (m *Manager) Scope(t codec.Target) (string, error) {
	scope := t.Scope
	if scope == "" {
		scope = ScopeForNamespace(t.Namespace)
	}
	if err := ValidateScope(scope); err != nil {
		return "", fmt.Errorf("scope of namespace %q: %w", printable(t.Namespace), err)
	}
	return scope, nil
}

// SealingKey returns the primary key of t's scope (see Scope), creating the scope's keyset first if it has none and auto-creation is on.
// A shredded scope returns an error wrapping codec.ErrKeyDestroyed.
func (m *Manager) SealingKey(ctx context.Context, t codec.Target) (codec.Key, error) {
	scope, err := m.Scope(t)
	if err != nil {
		return codec.Key{}, err
	}
	st, err := m.get(ctx, scope, 0, false)
	if err != nil {
		return codec.Key{}, err
	}
	if !st.hasKeyset {
		if st.shredded {
			return codec.Key{}, fmt.Errorf("%w: scope %q was shredded%s; new payloads need an explicitly re-created scope", codec.ErrKeyDestroyed, scope, st.goneCause())
		}
		if !m.autoCreate {
			return codec.Key{}, fmt.Errorf("%w: %q (create it with: blindfold keys init --scope %s)", ErrScopeNotFound, scope, scope)
		}
		if _, err := m.Create(ctx, scope, CreateOptions{}); errors.Is(err, ErrScopeExists) {
			m.evict(scope) // another process created it first: drop our "no keyset" entry so the next get reads theirs
		} else if err != nil {
			return codec.Key{}, err
		}
		if st, err = m.get(ctx, scope, 0, false); err != nil {
			return codec.Key{}, err
		}
		if !st.hasKeyset {
			return codec.Key{}, fmt.Errorf("%w: scope %q: keyset vanished after creation", ErrUnavailable, scope)
		}
	}
	if _, gone := st.destroyed[st.primary]; gone {
		return codec.Key{}, fmt.Errorf("%w: primary key of scope %q was shredded", codec.ErrKeyDestroyed, scope)
	}
	return st.seal, nil
}

// OpeningKey returns the key named id. The scope is the one named in id (so payloads stay readable when a namespace's scope mapping changes);
// the codec's associated data, not this lookup, binds a payload to its namespace.
func (m *Manager) OpeningKey(ctx context.Context, namespace, id string) (codec.Key, error) {
	scope, tid, err := ParseKeyID(id)
	if err != nil {
		return codec.Key{}, err
	}
	st, err := m.get(ctx, scope, tid, true)
	if err != nil {
		return codec.Key{}, err
	}
	if _, gone := st.destroyed[tid]; gone {
		return codec.Key{}, fmt.Errorf("%w: key %s was shredded", codec.ErrKeyDestroyed, id)
	}
	if _, ok := st.keyIDs[tid]; ok {
		return codec.Key{ID: id, AEAD: st.aead}, nil
	}
	if st.shredded && !st.hasKeyset {
		return codec.Key{}, fmt.Errorf("%w: scope %q of key %s was shredded%s", codec.ErrKeyDestroyed, scope, id, st.goneCause())
	}
	return codec.Key{}, fmt.Errorf("%w: %s", codec.ErrUnknownKey, id)
}

// get returns the cached state of scope, loading or refreshing it as needed. wantID, when check is set, is a key id the caller needs; a cached state without it is refreshed (rate-limited).
func (m *Manager) get(ctx context.Context, scope string, wantID uint32, check bool) (*scopeState, error) {
	now := m.now()
	if st := m.fresh(scope, now, wantID, check); st != nil {
		m.hits.Add(1)
		return st, nil
	}
	m.mu.Lock()
	e := m.entries[scope]
	if e != nil {
		m.listOf(e).MoveToFront(e.elem)
		e.touched.Store(now.UnixNano())
		st := e.st
		age := now.Sub(st.loadedAt)
		limited := now.Sub(e.lastAttempt) < m.minRefresh
		unknown := check && !st.knows(wantID)
		if age < m.ttl {
			if unknown {
				// A key id the cached keyset lacks is most often the new primary of another replica sharing the store: an age
				// refresh that happened to run just before must not make this one wait; only targeted reloads limit it.
				limited = now.Sub(e.lastTargeted) < m.minRefresh
				if limited && e.targeting != nil {
					// Another lookup's reload for a missing id is running (often for this same new primary): its
					// result is what this lookup needs, not the keyset it replaces.
					wait := e.targeting
					m.mu.Unlock()
					select {
					case <-wait:
					case <-ctx.Done():
					}
					m.mu.Lock()
					if cur := m.entries[scope]; cur != nil {
						st = cur.st
					}
					m.mu.Unlock()
					m.hits.Add(1)
					return st, nil
				}
			}
			targeted := unknown || (!check && !st.hasKeyset)
			stale := age >= m.refresh || targeted
			if !stale || limited {
				m.mu.Unlock()
				m.hits.Add(1)
				return st, nil
			}
			e.lastAttempt = now
			if targeted {
				e.lastTargeted = now
			}
			if unknown && e.targeting == nil {
				ch := make(chan struct{})
				e.targeting = ch
				defer func() {
					m.mu.Lock()
					if e.targeting == ch {
						e.targeting = nil
					}
					m.mu.Unlock()
					close(ch)
				}()
			}
			m.mu.Unlock()
			if unknown && age < m.refresh && st.hasKeyset && m.storeUnchanged(ctx, scope, st) {
				// A key id the cached keyset lacks, and the stored keyset is the one cached: a forged id (or a rotation
				// not stored yet). Only the store was read: forged ids never cost KEK calls, which a KMS may bill or
				// throttle. The age-based refresh still asks the KEK, so a KEK revocation takes effect within the TTL.
				m.refreshes.Add(1)
				return st, nil
			}
			if m.bgRefresh > 0 && st.hasKeyset && !unknown {
				m.hits.Add(1)
				go m.refreshInBackground(context.WithoutCancel(ctx), scope, age)
				return st, nil
			}
			m.refreshes.Add(1)
			nst, err := m.load(ctx, scope)
			if err == nil && unknown && !nst.knows(wantID) && nst.loadedAt.Before(now) {
				// The load joined one that read the store before this lookup began (a background refresh): the key
				// another replica stored just before sealing with it may be newer. Read once more, not shared with it.
				nst, err = m.loadShared(ctx, scope, "\x00targeted")
			}
			if err != nil {
				// Within the TTL the cached keyset stays good: a short KEK or store outage must not fail payloads.
				m.refreshFailures.Add(1)
				m.log.WarnContext(ctx, "keyset refresh failed; serving cached keyset", "scope", scope, "age", age.Round(time.Second), "ttl", m.ttl, "error", err)
				return st, nil
			}
			return nst, nil
		}
		if limited && e.lastErr != nil {
			err := e.lastErr
			m.mu.Unlock()
			m.misses.Add(1)
			return nil, err
		}
		e.lastAttempt, e.lastTargeted = now, now
	}
	m.mu.Unlock()
	m.misses.Add(1)
	st, err := m.load(ctx, scope)
	if err != nil {
		if e != nil {
			err = fmt.Errorf("%w: scope %q: cached keyset expired (ttl %s) and reloading failed: %w", ErrUnavailable, scope, m.ttl, err)
			m.mu.Lock()
			if cur := m.entries[scope]; cur == e {
				e.lastErr = err
			}
			m.mu.Unlock()
			m.log.ErrorContext(ctx, "keyset unavailable; failing closed", "scope", scope, "error", err)
			return nil, err
		}
		return nil, fmt.Errorf("%w: scope %q: %w", ErrUnavailable, scope, err)
	}
	return st, nil
}

// fresh returns the cached state of scope when get would answer with it at once, changing nothing but the entry's
// place in the LRU list: younger than RefreshAfter (which is at most the TTL), and knowing wantID (check) or holding a
// keyset (!check). Skipping the move is allowed for lruTouch after the last one. It takes no lock, since this is every
// payload's lookup; anything else (a refresh due, an unknown id, a missing keyset, a rate limit, an entry not touched
// for lruTouch) goes through get's locked path, as before.
func (m *Manager) fresh(scope string, now time.Time, wantID uint32, check bool) *scopeState {
	v, ok := m.fast.Load(scope)
	if !ok {
		return nil
	}
	e := v.(*cacheEntry)
	st := e.cur.Load()
	if st == nil || now.Sub(st.loadedAt) >= m.refresh || now.UnixNano()-e.touched.Load() >= int64(lruTouch) {
		return nil
	}
	if check {
		if !st.knows(wantID) {
			return nil
		}
	} else if !st.hasKeyset {
		return nil
	}
	return st
}

// storeUnchanged reports whether scope's stored keyset and tombstone are still the ones st was loaded from. A store error
// is "changed": the caller then reloads in full, which reports or survives the error as any refresh does.
func (m *Manager) storeUnchanged(ctx context.Context, scope string, st *scopeState) bool {
	m.fileReads.Add(1)
	cur, err := m.store.Load(ctx, scope)
	return err == nil && bytes.Equal(cur.Keyset, st.stored.Keyset) && bytes.Equal(cur.Tombstone, st.stored.Tombstone)
}

func (m *Manager) refreshInBackground(ctx context.Context, scope string, age time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, m.bgRefresh)
	defer cancel()
	m.refreshes.Add(1)
	if _, err := m.load(ctx, scope); err != nil {
		m.refreshFailures.Add(1)
		m.log.WarnContext(ctx, "background keyset refresh failed; serving cached keyset", "scope", scope, "age", age.Round(time.Second), "ttl", m.ttl, "error", err)
	}
}

// load reads and unwraps scope's keyset once for all concurrent callers and caches the result.
func (m *Manager) load(ctx context.Context, scope string) (*scopeState, error) {
	return m.loadShared(ctx, scope, "")
}

// loadShared is load, shared only with the concurrent loads of the same group (a suffix of the scope's key).
func (m *Manager) loadShared(ctx context.Context, scope, group string) (*scopeState, error) {
	m.mu.Lock()
	gen := m.gen
	m.mu.Unlock()
	v, err, _ := m.loads.Do(scope+group, func() (any, error) {
		st, err := m.loadUncached(ctx, scope)
		if err != nil {
			return nil, err
		}
		m.put(st, gen)
		return st, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*scopeState), nil
}

func (m *Manager) loadUncached(ctx context.Context, scope string) (*scopeState, error) {
	m.fileReads.Add(1)
	// loadedAt is when the read began, not when it ended: a lookup that began during the read may need a key stored
	// after it, and get tells the two apart by this time.
	began := m.now()
	stored, err := m.store.Load(ctx, scope)
	if err != nil {
		return nil, err
	}
	ts, err := parseTombstone(scope, stored.Tombstone)
	if err != nil {
		return nil, err
	}
	st := &scopeState{scope: scope, shredded: ts != nil, destroyed: ts.destroyedIDs(), keyIDs: map[uint32]struct{}{}, loadedAt: began, stored: stored}
	if stored.Keyset == nil {
		return st, nil
	}
	h, _, err := m.unwrap(ctx, scope, stored.Keyset)
	if errors.Is(err, ErrKEKKeyMissing) {
		// The KEK key that wrapped this keyset is gone (a Vault Transit key deleted by a shred): nothing can unwrap it again,
		// even a keyset file restored from a backup. Cache that as a shredded scope rather than retrying the KEK per payload.
		m.log.WarnContext(ctx, "scope keyset cannot be unwrapped: its kek key was deleted; treating the scope as shredded", "scope", scope, "error", err)
		st.shredded, st.kekGone = true, err
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("scope %q: keyset is not an AEAD keyset: %w", scope, err)
	}
	primary, err := h.Primary()
	if err != nil {
		return nil, fmt.Errorf("scope %q: keyset has no primary key: %w", scope, err)
	}
	for i := 0; i < h.Len(); i++ {
		e, err := h.Entry(i)
		if err != nil {
			return nil, fmt.Errorf("scope %q: %w", scope, err)
		}
		if e.KeyStatus() == keyset.Enabled {
			st.keyIDs[e.KeyID()] = struct{}{}
		}
	}
	st.hasKeyset = true
	st.aead = a
	st.primary = primary.KeyID()
	st.seal = codec.Key{ID: KeyID(scope, st.primary), AEAD: a}
	return st, nil
}

func (m *Manager) put(st *scopeState, gen uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gen != gen {
		return // the scope changed locally while this load ran; the next call reloads
	}
	neg := st.negative()
	e := m.entries[st.scope]
	if e != nil && st.loadedAt.Before(e.st.loadedAt) {
		return // a slower load that read the store before the cached one did: keep the newer
	}
	switch {
	case e == nil:
		e = &cacheEntry{scope: st.scope, neg: neg}
		e.setState(st)
		e.elem = m.listOf(e).PushFront(e)
		m.entries[st.scope] = e
		m.fast.Store(st.scope, e)
	case e.neg != neg: // created or deleted elsewhere: move to the other list
		m.listOf(e).Remove(e.elem)
		e.setState(st)
		e.lastErr, e.neg = nil, neg
		e.elem = m.listOf(e).PushFront(e)
	default:
		e.setState(st)
		e.lastErr = nil
		m.listOf(e).MoveToFront(e.elem)
	}
	e.touched.Store(m.now().UnixNano())
	m.trim(&m.lru, m.size)
	m.trim(&m.negLRU, m.negSize)
}

// listOf is the LRU list e belongs to. Callers hold m.mu.
func (m *Manager) listOf(e *cacheEntry) *list.List {
	if e.neg {
		return &m.negLRU
	}
	return &m.lru
}

// trim drops the least recently used entries of l beyond n. Callers hold m.mu.
func (m *Manager) trim(l *list.List, n int) {
	for l.Len() > n {
		old := l.Back().Value.(*cacheEntry)
		l.Remove(old.elem)
		delete(m.entries, old.scope)
		m.fast.Delete(old.scope)
	}
}

// evict drops scope from the cache and keeps loads that started before from re-inserting it.
func (m *Manager) evict(scope string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen++
	if e := m.entries[scope]; e != nil {
		m.listOf(e).Remove(e.elem)
		delete(m.entries, scope)
		m.fast.Delete(scope)
	}
}

// Stats are the Manager's counters since it was created, for metrics.
type Stats struct {
	// CacheHits counts key lookups answered from the cache without any load.
	CacheHits uint64
	// CacheMisses counts lookups that had to load a scope (not cached, or past its TTL).
	CacheMisses uint64
	// Refreshes counts reloads of a cached scope (age past RefreshAfter, or an unknown key id); RefreshFailures those that failed.
	Refreshes, RefreshFailures uint64
	// KEKCalls counts KEK Encrypt and Decrypt calls.
	KEKCalls uint64
	// KeyFileReads counts reads of a scope from the store.
	KeyFileReads uint64
	// CachedScopes is the number of scopes with a keyset or a tombstone in the cache now (bounded by WithCacheSize).
	CachedScopes int
	// NegativeEntries is the number of scopes with nothing stored remembered now (bounded by WithNegativeCacheSize).
	NegativeEntries int
}

// Stats returns a snapshot of the counters.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	n, neg := m.lru.Len(), m.negLRU.Len()
	m.mu.Unlock()
	return Stats{
		CacheHits:       m.hits.Load(),
		CacheMisses:     m.misses.Load(),
		Refreshes:       m.refreshes.Load(),
		RefreshFailures: m.refreshFailures.Load(),
		KEKCalls:        m.kek.calls.Load(),
		KeyFileReads:    m.fileReads.Load(),
		CachedScopes:    n,
		NegativeEntries: neg,
	}
}

type countingKEK struct {
	kek   KEK
	calls atomic.Uint64
}

func (c *countingKEK) EncryptWithContext(ctx context.Context, pt, ad []byte) ([]byte, error) {
	c.calls.Add(1)
	return c.kek.EncryptWithContext(ctx, pt, ad)
}

func (c *countingKEK) DecryptWithContext(ctx context.Context, ct, ad []byte) ([]byte, error) {
	c.calls.Add(1)
	return c.kek.DecryptWithContext(ctx, ct, ad)
}
