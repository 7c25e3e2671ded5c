//go:build !cgo

package pkcs11

import (
	"context"

	"github.com/blindfold-dev/blindfold/keys"
)

// KEK is not available without cgo.
type KEK struct{}

var _ keys.KEK = (*KEK)(nil)

// New returns ErrNotCompiled: this build has no cgo.
func New(context.Context, Config) (*KEK, error) { return nil, ErrNotCompiled }

// EncryptWithContext returns ErrNotCompiled.
func (*KEK) EncryptWithContext(context.Context, []byte, []byte) ([]byte, error) {
	return nil, ErrNotCompiled
}

// DecryptWithContext returns ErrNotCompiled.
func (*KEK) DecryptWithContext(context.Context, []byte, []byte) ([]byte, error) {
	return nil, ErrNotCompiled
}

// Close does nothing.
func (*KEK) Close() error { return nil }

// KeyLabel returns "".
func (*KEK) KeyLabel() string { return "" }

// DestroyKey returns ErrNotCompiled.
func (*KEK) DestroyKey(context.Context) error { return ErrNotCompiled }
