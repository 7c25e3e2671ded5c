package keys_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/keys"
)

// A Manager over a local key directory is a codec.Keyring: seal with the namespace's primary key, open by key id.
func ExampleOpenLocal() {
	dir, _ := os.MkdirTemp("", "blindfold-keys")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	m, err := keys.OpenLocal(dir) // creates dir/master.key on first use
	if err != nil {
		log.Fatal(err)
	}
	var kr codec.Keyring = m

	seal, _ := kr.SealingKey(ctx, codec.Target{Namespace: "default"}) // creates the scope's keyset on first use
	ct, _ := seal.AEAD.Encrypt([]byte("hello"), []byte("associated data"))

	open, _ := kr.OpeningKey(ctx, "default", seal.ID)
	pt, _ := open.AEAD.Decrypt(ct, []byte("associated data"))
	fmt.Println(string(pt))
	// Output: hello
}

// Rotation adds a new primary key; payloads sealed with older keys stay readable.
func ExampleManager_Rotate() {
	dir, _ := os.MkdirTemp("", "blindfold-keys")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	m, _ := keys.OpenLocal(dir)

	old, _ := m.SealingKey(ctx, codec.Target{Namespace: "payments"})
	ct, _ := old.AEAD.Encrypt([]byte("sealed before rotation"), nil)

	newID, _ := m.Rotate(ctx, "payments")
	cur, _ := m.SealingKey(ctx, codec.Target{Namespace: "payments"})
	fmt.Println(cur.ID == newID, cur.ID != old.ID)

	k, _ := m.OpeningKey(ctx, "payments", old.ID)
	pt, _ := k.AEAD.Decrypt(ct, nil)
	fmt.Println(string(pt))
	// Output:
	// true true
	// sealed before rotation
}

// After Shred every key of the scope is gone for good, with a distinct error.
func ExampleManager_Shred() {
	dir, _ := os.MkdirTemp("", "blindfold-keys")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	m, _ := keys.OpenLocal(dir)

	k, _ := m.SealingKey(ctx, codec.Target{Namespace: "tenant-42"})
	if err := m.Shred(ctx, "tenant-42"); err != nil {
		log.Fatal(err)
	}
	_, err := m.OpeningKey(ctx, "tenant-42", k.ID)
	fmt.Println(errors.Is(err, codec.ErrKeyDestroyed))
	_, err = m.SealingKey(ctx, codec.Target{Namespace: "tenant-42"})
	fmt.Println(errors.Is(err, codec.ErrKeyDestroyed))
	// Output:
	// true
	// true
}
