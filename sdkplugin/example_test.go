package sdkplugin_test

import (
	"errors"
	"fmt"
	"log"
	"os"

	"go.temporal.io/sdk/client"

	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/sdkplugin"
)

// Encryption in the SDK is one plugin in client.Options; workers built from the client inherit it.
func ExampleNew() {
	dir, err := os.MkdirTemp("", "blindfold-keys")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	kr, err := keys.OpenLocal(dir) // master key and keysets, created on first use
	if err != nil {
		log.Fatal(err)
	}
	plugin, err := sdkplugin.New(kr)
	if err != nil {
		log.Fatal(err)
	}
	opts := client.Options{HostPort: "127.0.0.1:7233", Plugins: []client.Plugin{plugin}}
	_ = opts // client.Dial(opts)

	// What the client will do to every value it sends:
	dc := plugin.DataConverter("default")
	p, err := dc.ToPayload("card 4111 1111 1111 1111")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(p.Metadata["encoding"]), string(p.Metadata["blindfold-namespace"]))
	var s string
	if err := dc.FromPayload(p, &s); err != nil {
		log.Fatal(err)
	}
	fmt.Println(s)
	// Output:
	// binary/encrypted default
	// card 4111 1111 1111 1111
}

// A worker that holds no keys calls the Blindfold codec endpoint instead.
func ExampleNewRemote() {
	plugin, err := sdkplugin.NewRemote("https://blindfold.internal:8081",
		sdkplugin.WithAuthHeader("Bearer "+os.Getenv("BLINDFOLD_CODEC_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	opts := client.Options{HostPort: "temporal.internal:7233", Plugins: []client.Plugin{plugin}}
	_ = opts // client.Dial(opts)
	fmt.Println(plugin.Name())
	// Output: blindfold
}

// Failure messages and stack traces travel sealed; the server stores a placeholder.
func ExamplePlugin_FailureConverter() {
	dir, err := os.MkdirTemp("", "blindfold-keys")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	kr, err := keys.OpenLocal(dir)
	if err != nil {
		log.Fatal(err)
	}
	plugin, err := sdkplugin.New(kr)
	if err != nil {
		log.Fatal(err)
	}
	fc := plugin.FailureConverter("default")
	f := fc.ErrorToFailure(errors.New("card 4111 1111 1111 1111 declined"))
	fmt.Println(f.GetMessage(), string(f.GetEncodedAttributes().GetMetadata()["encoding"]))
	fmt.Println(fc.FailureToError(f))
	// Output:
	// Encoded failure binary/encrypted
	// card 4111 1111 1111 1111 declined
}
