package testenv

import (
	"net"
	"os"
	"testing"
)

// WriteFileAtomic replaces path's content in one rename, as editors and Kubernetes ConfigMap updates do, so a
// watcher polling the file never sees half of it.
func WriteFileAtomic(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	err := os.WriteFile(tmp, []byte(content), 0o600)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// FreePort returns a loopback TCP port that was free a moment ago (for a process that must be told its port).
func FreePort(t testing.TB) int {
	t.Helper()
	l := Listen(t)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
