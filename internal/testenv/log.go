package testenv

import (
	"bytes"
	"log/slog"
	"sync"

	sdklog "go.temporal.io/sdk/log"
)

// DiscardLogger is a slog.Logger that drops every record.
func DiscardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// DiscardSDKLogger is a Temporal SDK logger (client.Options.Logger) that drops every record.
func DiscardSDKLogger() sdklog.Logger { return sdklog.NewStructuredLogger(DiscardLogger()) }

// SyncBuffer is a bytes.Buffer that goroutines may write (a logger's output, a command's) while the test reads it.
// The zero value is ready to use.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
