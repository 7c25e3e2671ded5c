package keys

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Stored is what a Store keeps for one scope. Both parts are opaque to the store.
type Stored struct {
	// Keyset is the wrapped keyset file, nil when the scope has none.
	Keyset []byte
	// Tombstone records shredded key ids, nil when the scope was never shredded.
	Tombstone []byte
}

// Store persists wrapped keysets and tombstones. Implementations must be safe for concurrent use, also across processes sharing the store.
// DirStore is the local one; keys/vaultkv keeps them in Vault KV version 2, shared by every replica.
type Store interface {
	// Load returns what is stored for scope; a scope never written returns a zero Stored and no error.
	Load(ctx context.Context, scope string) (Stored, error)
	// Update replaces scope's contents with fn's result atomically with respect to other Updates (also by other processes), so
	// rotations are never lost: DirStore holds a lock, a shared store writes with check-and-set and, when another process wrote
	// first, runs fn again on the newer contents. fn may therefore run more than once and must only compute its result.
	// A nil Keyset in the result deletes the stored keyset by overwriting and removing it.
	Update(ctx context.Context, scope string, fn func(cur Stored) (Stored, error)) error
	// Scopes lists every scope with a keyset or a tombstone, sorted.
	Scopes(ctx context.Context) ([]string, error)
}

const (
	keysetSuffix    = ".keyset"
	tombstoneSuffix = ".shredded"
	scopesDir       = "scopes"
	lockFile        = ".lock"
)

// DirStore is the local Store: <dir>/scopes/<scope>.keyset and <scope>.shredded, written atomically with mode 0600.
type DirStore struct {
	dir string
}

var _ Store = (*DirStore)(nil)

// NewDirStore returns a store under key directory dir. Directories are created (0700) on first write.
func NewDirStore(dir string) *DirStore {
	return &DirStore{dir: filepath.Join(dir, scopesDir)}
}

func (s *DirStore) paths(scope string) (keyset, tombstone string, err error) {
	if err := ValidateScope(scope); err != nil {
		return "", "", err
	}
	return filepath.Join(s.dir, scope+keysetSuffix), filepath.Join(s.dir, scope+tombstoneSuffix), nil
}

// Load reads scope's files.
func (s *DirStore) Load(_ context.Context, scope string) (Stored, error) {
	kp, tp, err := s.paths(scope)
	if err != nil {
		return Stored{}, err
	}
	var st Stored
	if st.Keyset, err = readOptional(kp); err != nil {
		return Stored{}, err
	}
	if st.Tombstone, err = readOptional(tp); err != nil {
		return Stored{}, err
	}
	return st, nil
}

func readOptional(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

// Update applies fn under an exclusive lock on the scopes directory.
func (s *DirStore) Update(ctx context.Context, scope string, fn func(cur Stored) (Stored, error)) error {
	kp, tp, err := s.paths(scope)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("create key directory: %w", err)
	}
	unlock, err := lockDir(filepath.Join(s.dir, lockFile))
	if err != nil {
		return fmt.Errorf("lock key directory: %w", err)
	}
	defer unlock()
	cur, err := s.Load(ctx, scope)
	if err != nil {
		return err
	}
	next, err := fn(cur)
	if err != nil {
		return err
	}
	// Tombstone first: if we crash between the two steps, the destroyed ids are already recorded and win over a leftover keyset.
	if next.Tombstone != nil && !slices.Equal(next.Tombstone, cur.Tombstone) {
		if err := writeAtomic(s.dir, tp, next.Tombstone); err != nil {
			return err
		}
	}
	switch {
	case next.Keyset == nil && cur.Keyset != nil:
		if err := shredFile(kp); err != nil {
			return err
		}
	case next.Keyset != nil && !slices.Equal(next.Keyset, cur.Keyset):
		if err := writeAtomic(s.dir, kp, next.Keyset); err != nil {
			return err
		}
	}
	return syncDir(s.dir)
}

// Scopes lists the scope names found in the directory.
func (s *DirStore) Scopes(_ context.Context) ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list scopes: %w", err)
	}
	var out []string
	for _, e := range ents {
		name := e.Name()
		var scope string
		switch {
		case strings.HasSuffix(name, keysetSuffix):
			scope = strings.TrimSuffix(name, keysetSuffix)
		case strings.HasSuffix(name, tombstoneSuffix):
			scope = strings.TrimSuffix(name, tombstoneSuffix)
		default:
			continue
		}
		if ValidateScope(scope) == nil && !slices.Contains(out, scope) {
			out = append(out, scope)
		}
	}
	slices.Sort(out)
	return out, nil
}

// writeTemp writes data to a new 0600 temp file in dir and returns its path.
func writeTemp(dir, base string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	if err := f.Chmod(0o600); err == nil {
		if _, err = f.Write(data); err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			return name, nil
		}
	} else {
		f.Close()
	}
	os.Remove(name)
	return "", err
}

func writeAtomic(dir, path string, data []byte) error {
	tmp, err := writeTemp(dir, filepath.Base(path), data)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// shredFile overwrites path with random bytes before removing it. On journaling, copy-on-write or flash storage the old blocks may survive; see the package doc.
func shredFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("shred %s: %w", path, err)
	}
	st, err := f.Stat()
	if err == nil {
		junk := make([]byte, st.Size())
		rand.Read(junk)
		if _, err = f.WriteAt(junk, 0); err == nil {
			err = f.Sync()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("shred %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("shred %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
