package codec_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/codec/codectest"
)

func Example() {
	ctx := context.Background()
	// In production the keyring is the keys package; codectest keeps keys in memory for tests and examples.
	c, err := codec.New(codectest.NewKeyring(), codec.WithCompression(1024))
	if err != nil {
		log.Fatal(err)
	}
	in := []*commonpb.Payload{{
		Metadata: map[string][]byte{"encoding": []byte("json/plain")},
		Data:     []byte(`{"card":"4111 1111 1111 1111"}`),
	}}

	sealed, err := c.Encode(ctx, "payments", in)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(codec.IsEncrypted(sealed[0]), string(sealed[0].Metadata["encoding"]))

	opened, err := c.Decode(ctx, "payments", sealed)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(opened[0].Metadata["encoding"]), string(opened[0].Data))

	// The envelope is bound to its namespace: elsewhere its key is not found (or, under a shared scope, it fails to authenticate).
	_, err = c.Decode(ctx, "marketing", sealed)
	fmt.Println(errors.Is(err, codec.ErrUnknownKey) || errors.Is(err, codec.ErrTampered))
	// Output:
	// true binary/encrypted
	// json/plain {"card":"4111 1111 1111 1111"}
	// true
}

func ExampleCodec_DecodeFor() {
	ctx := context.Background()
	c, err := codec.New(codectest.NewKeyring())
	if err != nil {
		log.Fatal(err)
	}
	// A payload of workflow "order-42", bound to it through the associated data.
	sealed, err := c.EncodeFor(ctx, codec.Target{Namespace: "payments", Binding: codec.Workflow("order-42")},
		[]*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`42`)}})
	if err != nil {
		log.Fatal(err)
	}
	b, _ := codec.BindingOf(sealed[0])
	fmt.Println(b)

	// Opening it for another workflow: Accept sees the claimed binding before anything is decrypted.
	only := func(want codec.Binding) codec.Expect {
		return codec.Expect{Namespace: "payments", Accept: func(_ int, got codec.Binding) error {
			if got != want {
				return fmt.Errorf("bound to %s, opened for %s", got, want)
			}
			return nil
		}}
	}
	_, err = c.DecodeFor(ctx, only(codec.Workflow("order-43")), sealed)
	fmt.Println(errors.Is(err, codec.ErrWrongBinding))

	opened, err := c.DecodeFor(ctx, only(codec.Workflow("order-42")), sealed)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(opened[0].Data))
	// Output:
	// workflow "order-42"
	// true
	// 42
}

func ExampleCodec_ForNamespace() {
	c, err := codec.New(codectest.NewKeyring())
	if err != nil {
		log.Fatal(err)
	}
	// A NamespaceCodec is a converter.PayloadCodec, so the Go SDK can encrypt in the worker with the same format as the proxy.
	dc := converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), c.ForNamespace("default"))
	p, err := dc.ToPayload("hello")
	if err != nil {
		log.Fatal(err)
	}
	var s string
	if err := dc.FromPayload(p, &s); err != nil {
		log.Fatal(err)
	}
	fmt.Println(codec.IsEncrypted(p), s)
	// Output: true hello
}

func ExampleKeyIDIn() {
	kr := codectest.NewKeyring()
	c, err := codec.New(kr)
	if err != nil {
		log.Fatal(err)
	}
	sealed, err := c.Encode(context.Background(), "default", []*commonpb.Payload{{Data: []byte("x")}})
	if err != nil {
		log.Fatal(err)
	}
	key, err := kr.SealingKey(context.Background(), codec.Target{Namespace: "default"})
	if err != nil {
		log.Fatal(err)
	}
	// A v2 envelope sealed with its namespace's default scope does not name the scope: KeyIDIn is told the namespace.
	id, ok := codec.KeyIDIn(sealed[0], "default")
	fmt.Println(ok, id == key.ID)
	// Output: true true
}

func ExampleWithWriteFormat() {
	ctx := context.Background()
	kr := codectest.NewKeyring()
	// Mid-upgrade, writers keep writing v1 until every reader reads v2; every codec reads both.
	old, err := codec.New(kr, codec.WithWriteFormat(1))
	if err != nil {
		log.Fatal(err)
	}
	current, err := codec.New(kr)
	if err != nil {
		log.Fatal(err)
	}
	in := []*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"hi"`)}}
	v1, err := old.Encode(ctx, "default", in)
	if err != nil {
		log.Fatal(err)
	}
	v2, err := current.Encode(ctx, "default", in)
	if err != nil {
		log.Fatal(err)
	}
	_, isV1 := v1[0].Metadata[codec.MetadataFormat]
	fmt.Println(isV1, len(v2[0].Metadata))
	out, err := current.Decode(ctx, "default", []*commonpb.Payload{v1[0], v2[0]})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(out[0].Data), string(out[1].Data))
	// Output:
	// true 1
	// "hi" "hi"
}

// A proxy that accepts payloads a client may already have sealed (an SDK plugin in front of it) must not forward anything
// unsealed that merely looks like an envelope: IsSealed is the strict test, IsEncrypted the lenient one.
func ExampleIsSealed() {
	ctx := context.Background()
	c, err := codec.New(codectest.NewKeyring())
	if err != nil {
		log.Fatal(err)
	}
	sealed, err := c.Encode(ctx, "default", []*commonpb.Payload{{
		Metadata: map[string][]byte{"encoding": []byte("json/plain")},
		Data:     []byte(`"hello"`),
	}})
	if err != nil {
		log.Fatal(err)
	}
	// Another codec's ciphertext that happens to start with the v2 magic and version bytes.
	lookalike := &commonpb.Payload{
		Metadata: map[string][]byte{"encoding": []byte("binary/encrypted")},
		Data:     []byte{0xBF, 0x02, 0x7c, 0x91, 0x3e, 0x55},
	}
	for _, p := range []*commonpb.Payload{sealed[0], lookalike} {
		fmt.Println(codec.IsEncrypted(p), codec.IsSealed(p))
	}
	// Output:
	// true true
	// true false
}
