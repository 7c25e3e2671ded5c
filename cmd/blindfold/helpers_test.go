package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	sdklog "go.temporal.io/sdk/log"

	"github.com/spf13/cobra"

	"github.com/blindfold-dev/blindfold/internal/testenv"
)

// quietSDK keeps the SDK's debug logging out of the test output.
var quietSDK = sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))

// runningCmd is a command executing in a goroutine.
type runningCmd struct {
	cancel context.CancelFunc
	done   chan error
	out    *testenv.SyncBuffer
}

// stop cancels the command as Ctrl-C would and returns its error; it fails the test if the command hangs.
func (r *runningCmd) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		return err
	case <-time.After(45 * time.Second):
		t.Fatalf("command did not stop within 45s; output:\n%s", r.out.String())
		return nil
	}
}

// execute runs c with args in a goroutine.
func execute(c *cobra.Command, args []string) *runningCmd {
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningCmd{cancel: cancel, done: make(chan error, 1), out: &testenv.SyncBuffer{}}
	c.SetArgs(args)
	c.SetOut(r.out)
	c.SetErr(r.out)
	go func() { r.done <- c.ExecuteContext(ctx) }()
	return r
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	return string(b)
}
