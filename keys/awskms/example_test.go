package awskms_test

import (
	"context"
	"log"
	"time"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/keys/awskms"
)

// A Manager whose scope keysets are wrapped by one AWS KMS key, the scope in the encryption context. Keysets are still
// stored in the key directory; KMS is called only when a scope is loaded, refreshed, created, rotated or rewrapped.
func ExampleNew() {
	ctx := context.Background()
	kek, err := awskms.New(ctx, awskms.Config{
		KeyID: "arn:aws:kms:eu-west-1:111122223333:alias/blindfold", // the region comes from the ARN
		// Endpoint: "https://vpce-….kms.eu-west-1.vpce.amazonaws.com", // a VPC interface endpoint
	})
	if err != nil {
		log.Fatal(err)
	}
	m, err := keys.NewManager(keys.NewDirStore("/var/lib/blindfold/keys"), kek,
		keys.WithCacheTTL(10*time.Minute),          // the longest KMS outage to ride out
		keys.WithBackgroundRefresh(10*time.Second)) // a slow KMS never delays a payload
	if err != nil {
		log.Fatal(err)
	}
	c, err := codec.New(m)
	if err != nil {
		log.Fatal(err)
	}
	_ = c
}
