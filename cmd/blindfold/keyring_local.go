package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/gateway"
)

// decodeOpenKeyring opens the local key directory read-only in spirit: it never creates a master key or a keyset,
// so decoding with a wrong --keys path fails clearly instead of minting fresh, useless keys.
func decodeOpenKeyring(ctx context.Context, dir string) (codec.Keyring, error) {
	k, err := gateway.OpenKeys(ctx, gateway.KeysConfig{Dir: dir, KEK: gateway.KEKLocal}, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("decode never creates keys; pass the --key-dir that blindfold keys init created: %w", err)
	}
	if err != nil {
		return nil, err
	}
	return k.Manager, nil
}
