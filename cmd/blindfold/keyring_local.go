package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/keys"
)

// decodeOpenKeyring opens the local key directory read-only in spirit: it never creates a master key or a keyset,
// so decoding with a wrong --keys path fails clearly instead of minting fresh, useless keys.
func decodeOpenKeyring(_ context.Context, dir string) (codec.Keyring, error) {
	kek, err := keys.LoadMasterKey(dir, false)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no master key in %s (decode never creates keys; pass the --key-dir that blindfold keys init created): %w", dir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open keys in %s: %w", dir, err)
	}
	return keys.NewManager(keys.NewDirStore(dir), kek, keys.WithAutoCreate(false))
}
