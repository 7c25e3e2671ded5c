package keys

import (
	"os"
	"path/filepath"
)

// KeyDirEnv names the environment variable that overrides the default key directory.
const KeyDirEnv = "BLINDFOLD_KEY_DIR"

// DefaultDir returns the local key directory: $BLINDFOLD_KEY_DIR, else ~/.blindfold/keys (".blindfold/keys" if there is no home directory).
func DefaultDir() string {
	if d := os.Getenv(KeyDirEnv); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return filepath.Join(".blindfold", "keys")
	}
	return filepath.Join(home, ".blindfold", "keys")
}
