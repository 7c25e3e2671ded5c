package vaultkv_test

import (
	"context"
	"log"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/keys/vaultkv"
)

// Replicas that share one Vault KV version 2 folder share their keysets: a scope created, rotated or shredded by one is what
// every other replica reads.
func ExampleNew() {
	ctx := context.Background()
	client, err := vaultapi.NewClient(vaultapi.DefaultConfig()) // VAULT_ADDR, VAULT_TOKEN, VAULT_CACERT, …
	if err != nil {
		log.Fatal(err)
	}
	store, err := vaultkv.New(client, vaultkv.Config{Mount: "secret", Path: "blindfold/scopes"})
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Check(ctx); err != nil {
		log.Fatal(err) // not a KV v2 mount, or the token may not use it
	}
	kek, err := keys.LoadMasterKey("/etc/blindfold/keys", false) // or a Vault Transit KEK
	if err != nil {
		log.Fatal(err)
	}
	m, err := keys.NewManager(store, kek)
	if err != nil {
		log.Fatal(err)
	}
	_ = m // the codec's keyring
}
