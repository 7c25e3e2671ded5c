package testenv

import (
	"testing"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/keys"
)

// LocalCodec opens local keys in dir (creating the master key, and keysets on first use, unless opts say otherwise)
// and a codec over them.
func LocalCodec(t testing.TB, dir string, opts ...keys.Option) (*keys.Manager, *codec.Codec) {
	t.Helper()
	km, err := keys.OpenLocal(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	c, err := codec.New(km)
	if err != nil {
		t.Fatal(err)
	}
	return km, c
}
