package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultPollInterval is how often a Store's Watch looks at the policy file.
const DefaultPollInterval = time.Second

// Store holds the policy in force and swaps it atomically on reload. Readers take a snapshot with Current and keep
// using it for the rest of their work (an RPC in flight keeps the policy it started with). Safe for concurrent use.
type Store struct {
	path     string
	log      *slog.Logger
	interval time.Duration
	onChange func(*Policy)

	cur atomic.Pointer[Policy]

	mu   sync.Mutex // serializes reloads
	hash [sha256.Size]byte
	stat fileStamp
}

// fileStamp is what a poll compares before reading the file: cheap, and os.Stat follows symlinks, so it also changes
// when a Kubernetes ConfigMap's symlink is swapped to a new file.
type fileStamp struct {
	mod  time.Time
	size int64
}

// StoreOption configures a Store.
type StoreOption func(*Store)

// WithStoreLogger sets the logger for reloads and rejected files (default slog.Default()).
func WithStoreLogger(l *slog.Logger) StoreOption { return func(s *Store) { s.log = l } }

// WithPollInterval sets how often Watch checks the file (default DefaultPollInterval).
func WithPollInterval(d time.Duration) StoreOption { return func(s *Store) { s.interval = d } }

// WithOnChange sets a function called after each successful swap with the new policy (from the goroutine that
// reloaded). It must not block for long.
func WithOnChange(f func(*Policy)) StoreOption { return func(s *Store) { s.onChange = f } }

// NewStore loads the policy file at path. An invalid file is an error: a process must not start without a valid policy.
func NewStore(path string, opts ...StoreOption) (*Store, error) {
	s := &Store{path: path, log: slog.Default(), interval: DefaultPollInterval}
	for _, o := range opts {
		o(s)
	}
	st, data, err := readStamped(path)
	if err != nil {
		return nil, err
	}
	p, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	s.cur.Store(p)
	s.hash, s.stat = sha256.Sum256(data), st
	return s, nil
}

// StaticStore returns a Store that always serves p and never reloads (for tests and embedding).
func StaticStore(p *Policy) *Store {
	s := &Store{log: slog.Default(), interval: DefaultPollInterval}
	s.cur.Store(p)
	return s
}

// Current returns the policy in force. It never returns nil for a Store made by NewStore or StaticStore(non-nil).
func (s *Store) Current() *Policy { return s.cur.Load() }

// Path returns the file the Store reloads from ("" for a static store).
func (s *Store) Path() string { return s.path }

// Reload reads the file again. A valid file whose content changed replaces the policy and returns changed=true; an
// unchanged file does nothing; an invalid or unreadable file leaves the old policy in force and returns the error.
func (s *Store) Reload() (changed bool, err error) {
	if s.path == "" {
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reloadLocked()
}

func (s *Store) reloadLocked() (bool, error) {
	st, data, err := readStamped(s.path)
	if err != nil {
		return false, err
	}
	s.stat = st
	h := sha256.Sum256(data)
	if bytes.Equal(h[:], s.hash[:]) {
		return false, nil
	}
	p, err := Parse(s.path, data)
	if err != nil {
		// Remember the bad content, so it is reported once, not on every poll.
		s.hash = h
		return false, err
	}
	s.hash = h
	s.cur.Store(p)
	if s.onChange != nil {
		s.onChange(p)
	}
	return true, nil
}

// Watch reloads the policy whenever the file changes (polled every interval: modification time, size and inode, then
// a content hash; the module graph has no fsnotify, and a one-second poll of one small file costs nothing) or the
// process receives SIGHUP (which reloads even if the file looks unchanged), until ctx ends.
// Every reload is logged; an invalid file is logged at error level and the old policy stays. Watch returns ctx's error.
func (s *Store) Watch(ctx context.Context) error {
	if s.path == "" {
		<-ctx.Done()
		return ctx.Err()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-hup:
			s.mu.Lock()
			s.hash = [sha256.Size]byte{} // force a parse, so an operator's SIGHUP always gets a log line
			s.reportReload("SIGHUP")
			s.mu.Unlock()
		case <-tick.C:
			s.mu.Lock()
			if st, err := stamp(s.path); err != nil || !st.mod.Equal(s.stat.mod) || st.size != s.stat.size {
				s.reportReload("file changed")
			}
			s.mu.Unlock()
		}
	}
}

func (s *Store) reportReload(trigger string) {
	changed, err := s.reloadLocked()
	switch {
	case err != nil:
		s.log.Error("policy reload rejected; the previous policy stays in force", "file", s.path, "trigger", trigger, "error", err.Error())
	case changed:
		s.log.Info("policy reloaded", "file", s.path, "trigger", trigger)
	case trigger == "SIGHUP":
		s.log.Info("policy reload: unchanged", "file", s.path, "trigger", trigger)
	}
}

// Watch loads the policy at path and keeps it current until ctx ends, calling onChange (may be nil) after every
// successful reload. It is NewStore plus Store.Watch in a goroutine; the returned Store's Current is the policy in force.
func Watch(ctx context.Context, path string, onChange func(*Policy), opts ...StoreOption) (*Store, error) {
	s, err := NewStore(path, append(opts, WithOnChange(onChange))...)
	if err != nil {
		return nil, err
	}
	go func() { _ = s.Watch(ctx) }()
	return s, nil
}

func readStamped(path string) (fileStamp, []byte, error) {
	st, err := stamp(path)
	if err != nil {
		return fileStamp{}, nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fileStamp{}, nil, fmt.Errorf("read policy: %w", err)
	}
	return st, data, nil
}

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, fmt.Errorf("read policy: %w", err)
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size()}, nil
}

// SealScope is Current().SealScope: the scope new payloads of namespace are sealed with under the policy in force, when
// no request names a tenant (see Policy.SealScope).
func (s *Store) SealScope(namespace string) (string, error) {
	return s.Current().SealScope(namespace)
}
