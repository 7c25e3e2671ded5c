package pkcs11_test

import (
	"context"
	"log"
	"os"

	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/keys/pkcs11"
)

// A Manager whose scope keysets are wrapped with AES-GCM on an HSM by a key that never leaves it. It needs a cgo build.
func ExampleNew() {
	ctx := context.Background()
	kek, err := pkcs11.New(ctx, pkcs11.Config{
		Module:     "/usr/lib/softhsm/libsofthsm2.so", // the HSM vendor's PKCS#11 library
		TokenLabel: "blindfold",
		PINFile:    "/run/secrets/hsm-pin",
		KeyLabel:   "blindfold-kek",
	})
	if err != nil {
		log.Println(err)
		os.Exit(1)
	}
	defer kek.Close()
	m, err := keys.NewManager(keys.NewDirStore("/var/lib/blindfold/keys"), kek, keys.WithAutoCreate(false))
	if err != nil {
		log.Fatal(err)
	}
	_ = m
}
