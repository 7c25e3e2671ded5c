package keys

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/tink-crypto/tink-go/v2/aead/subtle"
)

// KEK is a key-encryption key: it wraps and unwraps scope keysets.
// associatedData carries the scope name, so a keyset wrapped for one scope does not unwrap for another.
//
// The method set is Tink's tink.AEADWithContext, so any Tink KMS AEAD can serve as a KEK.
// DecryptWithContext must return an error wrapping ErrUnwrap when the KEK rejects the ciphertext (authentication failed: wrong key,
// tampering, other associated data) and any other error when it could not decide (unreachable, denied, ctx done): the Manager reports
// the first as a bad keyset and keeps the second as the cause of ErrUnavailable. Implementations that call a service (Vault Transit)
// must honour ctx. The Manager counts every call in Stats.KEKCalls.
type KEK interface {
	EncryptWithContext(ctx context.Context, plaintext, associatedData []byte) ([]byte, error)
	DecryptWithContext(ctx context.Context, ciphertext, associatedData []byte) ([]byte, error)
}

// MasterKeyEnv names the environment variable that, when set, holds the local master key (32 bytes, standard base64) instead of <dir>/master.key.
const MasterKeyEnv = "BLINDFOLD_MASTER_KEY"

// MasterKeyFile is the master key's file name inside a key directory.
const MasterKeyFile = "master.key"

// LocalKEK is the local provider's KEK: AES-256-GCM under a 32-byte master key held in this process.
type LocalKEK struct {
	aead *subtle.AESGCM
}

var _ KEK = (*LocalKEK)(nil)

// NewLocalKEK returns a KEK using the 32-byte master key.
func NewLocalKEK(masterKey []byte) (*LocalKEK, error) {
	if len(masterKey) != 32 {
		return nil, fmt.Errorf("%w: %d bytes, want 32", ErrBadMasterKey, len(masterKey))
	}
	a, err := subtle.NewAESGCM(masterKey)
	if err != nil {
		return nil, fmt.Errorf("local kek: %w", err)
	}
	return &LocalKEK{aead: a}, nil
}

// EncryptWithContext wraps plaintext under the master key.
func (k *LocalKEK) EncryptWithContext(_ context.Context, plaintext, associatedData []byte) ([]byte, error) {
	return k.aead.Encrypt(plaintext, associatedData)
}

// DecryptWithContext unwraps ciphertext; it fails for a wrong master key, tampering or other associated data.
func (k *LocalKEK) DecryptWithContext(_ context.Context, ciphertext, associatedData []byte) ([]byte, error) {
	pt, err := k.aead.Decrypt(ciphertext, associatedData)
	if err != nil {
		return nil, fmt.Errorf("%w: master key: %v", ErrUnwrap, err)
	}
	return pt, nil
}

// LoadMasterKey returns the local KEK for key directory dir.
//
// The master key comes from $BLINDFOLD_MASTER_KEY when set, else from <dir>/master.key (standard base64 of 32 bytes).
// When the file is missing and create is true, a random key is written there (file 0600, directory 0700).
// A key file readable or writable by group or others is refused with ErrInsecurePermissions.
func LoadMasterKey(dir string, create bool) (*LocalKEK, error) {
	if v, ok := os.LookupEnv(MasterKeyEnv); ok {
		k, err := decodeMasterKey(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", MasterKeyEnv, err)
		}
		return NewLocalKEK(k)
	}
	path := filepath.Join(dir, MasterKeyFile)
	k, err := readMasterKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		if err := createMasterKeyFile(dir, path); err != nil {
			return nil, err
		}
		k, err = readMasterKeyFile(path)
	}
	if err != nil {
		return nil, err
	}
	return NewLocalKEK(k)
}

func decodeMasterKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%w: not standard base64", ErrBadMasterKey)
	}
	if len(k) != 32 {
		return nil, fmt.Errorf("%w: %d bytes, want 32", ErrBadMasterKey, len(k))
	}
	return k, nil
}

func readMasterKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open master key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat master key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o; run: chmod 600 %s", ErrInsecurePermissions, path, st.Mode().Perm(), path)
	}
	buf, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return nil, fmt.Errorf("read master key %s: %w", path, err)
	}
	k, err := decodeMasterKey(string(buf))
	if err != nil {
		return nil, fmt.Errorf("master key %s: %w", path, err)
	}
	return k, nil
}

func createMasterKeyFile(dir, path string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create key directory: %w", err)
	}
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return fmt.Errorf("generate master key: %w", err)
	}
	// Link, not rename: if another process created the key meanwhile, keep theirs (rename would replace it and orphan their keysets).
	tmp, err := writeTemp(dir, MasterKeyFile, []byte(base64.StdEncoding.EncodeToString(k)+"\n"))
	if err != nil {
		return fmt.Errorf("write master key: %w", err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("write master key: %w", err)
	}
	return syncDir(dir)
}
