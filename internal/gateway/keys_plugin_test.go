package gateway

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/keys/kekplugin"
)

func TestKeyPlanPlugin(t *testing.T) {
	t.Parallel()
	// A plugin is a separate process: like Vault, a slow one must never delay a payload.
	got := KeysConfig{Dir: "d", KEK: KEKPlugin}.Plan()
	if want := (KeyPlan{BackgroundRefresh: DefaultBackgroundRefresh, CacheTTL: keys.DefaultCacheTTL}); got != want {
		t.Fatalf("plan %+v, want %+v", got, want)
	}
	if k, err := ParseKEKKind("plugin"); err != nil || k != KEKPlugin {
		t.Fatalf("ParseKEKKind(plugin) = %v, %v", k, err)
	}
}

// TestOpenKeysPlugin opens keys wrapped by a KEK plugin served in-process (the protocol end to end is tested in
// keys/kekplugin with the example plugin as a real process).
func TestOpenKeysPlugin(t *testing.T) {
	t.Parallel()
	sd, err := os.MkdirTemp("", "gwkek")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sd) })
	sock := filepath.Join(sd, "kek.sock")
	lis, err := kekplugin.ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	master, err := keys.NewLocalKEK(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- kekplugin.Serve(ctx, lis, kekplugin.FromKEK(master), kekplugin.WithInfo("test", "0"))
	}()
	t.Cleanup(func() { cancel(); <-served })

	dir := t.TempDir() // no master.key: the plugin replaces it
	k, err := OpenKeys(context.Background(), KeysConfig{Dir: dir, KEK: KEKPlugin, AutoCreate: true,
		Plugin: kekplugin.Config{Address: "unix://" + sock}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if k.Plugin == nil || k.KEK() != keys.KEK(k.Plugin) || k.Plugin.Info().Name != "test" {
		t.Fatalf("keys: plugin %v, kek %T", k.Plugin, k.KEK())
	}
	key, err := k.Manager.SealingKey(context.Background(), codec.Target{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, keys.MasterKeyFile)); !os.IsNotExist(err) {
		t.Errorf("a master key was created with --kek plugin: %v", err)
	}
	if s := k.Manager.Stats(); s.KEKCalls != 2 || key.ID == "" {
		t.Errorf("stats %+v after creating one scope, want 2 plugin calls (wrap, unwrap)", s)
	}

	// A plugin that is not running fails the start, naming it.
	absent := filepath.Join(sd, "absent.sock")
	_, err = OpenKeys(context.Background(), KeysConfig{Dir: dir, KEK: KEKPlugin,
		Plugin: kekplugin.Config{Address: absent, Timeout: 200 * time.Millisecond}}, nil)
	if err == nil || !strings.Contains(err.Error(), absent) {
		t.Fatalf("OpenKeys with no plugin running = %v, want an error naming %s", err, absent)
	}
}
