package sdkplugin_test

import (
	"errors"
	"fmt"
	"log"
	"os"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/blindfold-dev/blindfold/codec"
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

	// What the client will do to a value it sends to workflow "order-42": the SDK names the workflow in a
	// serialization context, and the envelope is bound to it (format v2).
	inWorkflow := func(id string) converter.DataConverter {
		return converter.WithDataConverterSerializationContext(plugin.DataConverter("default"),
			converter.WorkflowSerializationContext{Namespace: "default", WorkflowID: id})
	}
	p, err := inWorkflow("order-42").ToPayload("card 4111 1111 1111 1111")
	if err != nil {
		log.Fatal(err)
	}
	b, _ := codec.BindingOf(p)
	fmt.Println(string(p.Metadata["encoding"]), b)
	var s string
	if err := inWorkflow("order-42").FromPayload(p, &s); err != nil {
		log.Fatal(err)
	}
	fmt.Println(s)
	// Copied into another workflow, it does not open.
	fmt.Println(errors.Is(inWorkflow("order-43").FromPayload(p, &s), codec.ErrWrongBinding))
	// Output:
	// binary/encrypted workflow "order-42"
	// card 4111 1111 1111 1111
	// true
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

// A Nexus handler in namespace "payments" serving callers in "orders": each side lists the other as a Nexus peer.
func ExampleWithNexusPeers() {
	dir, err := os.MkdirTemp("", "blindfold-keys")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	kr, err := keys.OpenLocal(dir)
	if err != nil {
		log.Fatal(err)
	}
	caller, err := sdkplugin.New(kr, sdkplugin.WithNexusPeers("payments"))
	if err != nil {
		log.Fatal(err)
	}
	handler, err := sdkplugin.New(kr, sdkplugin.WithNexusPeers("orders"))
	if err != nil {
		log.Fatal(err)
	}
	// In the workflow calling the operation, and in the handler (the SDK passes these contexts itself):
	op := converter.NexusSerializationContext{Endpoint: "payments", Service: "billing", Operation: "charge"}
	in, err := converter.WithDataConverterSerializationContext(caller.DataConverter("orders"), op).ToPayload("order 42")
	if err != nil {
		log.Fatal(err)
	}
	var s string
	if err := converter.WithDataConverterSerializationContext(handler.DataConverter("payments"), op).FromPayload(in, &s); err != nil {
		log.Fatal(err)
	}
	fmt.Println(s)
	// Output: order 42
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
