package keys_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/blindfold-dev/blindfold/keys"
)

func TestLoadMasterKeyCreates(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "new", "keys")
	if _, err := keys.LoadMasterKey(dir, false); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing key without create: %v, want ErrNotExist", err)
	}
	k1, err := keys.LoadMasterKey(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, keys.MasterKeyFile): 0o600} {
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %04o", path, st.Mode().Perm(), err, want)
		}
	}
	// Loading again returns the same key: what one wraps, the other unwraps.
	k2, err := keys.LoadMasterKey(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ct, _ := k1.EncryptWithContext(ctx, []byte("x"), []byte("ad"))
	if _, err := k2.DecryptWithContext(ctx, ct, []byte("ad")); err != nil {
		t.Fatalf("reloaded master key differs: %v", err)
	}
	if _, err := k2.DecryptWithContext(ctx, ct, []byte("other")); err == nil {
		t.Fatal("other associated data decrypted")
	}
}

func TestLoadMasterKeyErrors(t *testing.T) {
	good := base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, tc := range []struct {
		name    string
		content string
		mode    os.FileMode
		env     *string
		want    error
	}{
		{"group readable", good, 0o640, nil, keys.ErrInsecurePermissions},
		{"world readable", good, 0o604, nil, keys.ErrInsecurePermissions},
		{"group writable", good, 0o620, nil, keys.ErrInsecurePermissions},
		{"not base64", "not base64!!", 0o600, nil, keys.ErrBadMasterKey},
		{"short", base64.StdEncoding.EncodeToString(make([]byte, 16)), 0o600, nil, keys.ErrBadMasterKey},
		{"empty", "", 0o600, nil, keys.ErrBadMasterKey},
		{"env not base64", good, 0o600, ptr("%%%"), keys.ErrBadMasterKey},
		{"env short", good, 0o600, ptr(base64.StdEncoding.EncodeToString(make([]byte, 31))), keys.ErrBadMasterKey},
		{"env wins over a bad file", "junk", 0o644, ptr(good), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, keys.MasterKeyFile)
			if err := os.WriteFile(path, []byte(tc.content), tc.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(path, tc.mode)
			if tc.env != nil {
				t.Setenv(keys.MasterKeyEnv, *tc.env)
			}
			_, err := keys.LoadMasterKey(dir, true)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("LoadMasterKey: %v, want %v", err, tc.want)
			}
		})
	}
}

func ptr(s string) *string { return &s }
