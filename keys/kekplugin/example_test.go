package kekplugin_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/keys/kekplugin"
)

// A plugin serves a Backend (here Blindfold's own local KEK, where a real plugin would call its KMS) on a unix socket;
// Blindfold's side is a kekplugin.KEK, used like any keys.KEK.
func Example() {
	dir, _ := os.MkdirTemp("", "kekplugin")
	defer os.RemoveAll(dir)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()

	// The plugin process.
	lis, err := kekplugin.ListenUnix(filepath.Join(dir, "kek.sock")) // mode 0600: only this user may connect
	if err != nil {
		log.Fatal(err)
	}
	master, _ := keys.NewLocalKEK(make([]byte, 32)) // an all-zero key: for the example only
	go kekplugin.Serve(ctx, lis, kekplugin.FromKEK(master), kekplugin.WithInfo("example", "1"))

	// Blindfold.
	kek, err := kekplugin.Dial(ctx, kekplugin.Config{Address: "unix://" + filepath.Join(dir, "kek.sock")})
	if err != nil {
		log.Fatal(err)
	}
	defer kek.Close()
	m, _ := keys.NewManager(keys.NewDirStore(filepath.Join(dir, "keys")), kek)
	id, err := m.Create(ctx, "payments", keys.CreateOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("created a keyset wrapped by the plugin:", id != "")
	// Output: created a keyset wrapped by the plugin: true
}
