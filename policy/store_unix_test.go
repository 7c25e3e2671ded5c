//go:build unix

package policy

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/blindfold-dev/blindfold/internal/testenv"
)

func TestStoreSIGHUP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, storeV1)
	var logs testenv.SyncBuffer
	reloaded := make(chan *Policy, 10)
	s, err := NewStore(path, WithPollInterval(time.Hour), WithOnChange(func(p *Policy) { reloaded <- p }),
		WithStoreLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	// A handler of the test's own keeps SIGHUP from ending the test binary before Watch has installed its handler.
	own := make(chan os.Signal, 10)
	signal.Notify(own, syscall.SIGHUP)
	defer signal.Stop(own)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Watch returned %v", err)
		}
	}()
	// The poll interval is an hour, so only the signal can reveal the change.
	writeFile(t, path, storeV2)
	// Retry until Watch has installed its handler and reloaded.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-reloaded:
			if r, _ := p.Namespace("default"); !r.EncryptsSearchAttribute("Notes") {
				t.Fatal("SIGHUP loaded the wrong policy")
			}
			// onChange runs before the reload is logged, so give the log line a moment.
			for end := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "trigger=SIGHUP"); {
				if time.Now().After(end) {
					t.Fatalf("reload not logged: %s", logs.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not reload")
		}
	}
}
