package vault_test

import (
	"context"
	"log"
	"time"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/keys/vault"
)

// A Manager whose scope keysets are wrapped by Vault Transit: one derived Transit key per scope ("blindfold-<scope>").
// Keysets are still stored in the key directory; Vault is called only when a scope is loaded, refreshed, rotated or shredded.
func ExampleNewKEK() {
	ctx := context.Background()
	kek, err := vault.NewKEK(ctx, vault.Config{
		Address:    "https://vault.internal:8200", // empty: $VAULT_ADDR
		Mount:      "transit",
		TLS:        vault.TLS{CACert: "/etc/blindfold/vault-ca.pem"},
		Auth:       vault.Auth{Method: vault.AuthAppRole, RoleID: "…", SecretIDFile: "/run/secrets/vault-secret-id"},
		CreateKeys: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer kek.Close()
	m, err := keys.NewManager(keys.NewDirStore("/var/lib/blindfold/keys"), kek,
		keys.WithCacheTTL(10*time.Minute),          // the longest Vault outage to ride out
		keys.WithBackgroundRefresh(10*time.Second)) // a slow Vault never delays a payload
	if err != nil {
		log.Fatal(err)
	}
	stop := m.StartRotation(ctx, 30*24*time.Hour) // new data keys monthly, off the payload path
	defer stop()
	c, err := codec.New(m)
	if err != nil {
		log.Fatal(err)
	}
	_ = c
}
