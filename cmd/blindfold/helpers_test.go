package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/keys"
)

// quietSDK keeps the SDK's debug logging out of the test output.
var quietSDK = testenv.DiscardSDKLogger()

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

// cliStep is one command of a scripted CLI session: its standard input and arguments, what its output must contain
// and what its error must say ("" for none).
type cliStep struct {
	name    string
	stdin   string
	args    []string
	wantOut []string
	wantErr string
}

// startProxyCmd runs `blindfold proxy` with args and waits (30 s at most) until its gateway serves; it returns the
// running command and the addresses of the proxy and of the metrics listener.
func startProxyCmd(t *testing.T, args []string) (r *runningCmd, proxyAddr, metricsAddr string) {
	t.Helper()
	type ready struct{ proxy, metrics string }
	readyCh := make(chan ready, 1)
	testHookGatewayReady = func(p, m string) { readyCh <- ready{p, m} }
	defer func() { testHookGatewayReady = nil }()
	r = execute(newProxyCmd(), args)
	select {
	case rd := <-readyCh:
		return r, rd.proxy, rd.metrics
	case err := <-r.done:
		t.Fatalf("proxy exited: %v\n%s", err, r.out.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("proxy not ready:\n%s", r.out.String())
	}
	return nil, "", ""
}

// newKeyDir is a key directory with a fresh local master key.
func newKeyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := keys.LoadMasterKey(dir, true); err != nil {
		t.Fatal(err)
	}
	return dir
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	code, body := testenv.HTTPGet(t, url)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s\n%s", url, code, http.StatusText(code), body)
	}
	return body
}
