package pkcs11

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// ErrNotCompiled is New's error in a build without cgo: PKCS#11 modules are C libraries.
var ErrNotCompiled = errors.New("pkcs11 kek not compiled in: this blindfold was built without cgo (CGO_ENABLED=0); use the cgo build (see docs/keys.md)")

// DefaultTimeout bounds each token operation as the caller sees it.
const DefaultTimeout = 10 * time.Second

// Config configures a KEK.
type Config struct {
	// Module is the path of the token's PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so. Required.
	Module string
	// TokenLabel selects the token (slot) by its label. Required.
	TokenLabel string
	// PIN is the user PIN. Prefer PINFile; when both are empty New fails.
	PIN string
	// PINFile holds the user PIN (trailing newline ignored).
	PINFile string
	// KeyLabel is the CKA_LABEL of the AES key on the token. Required.
	KeyLabel string
	// CreateKey lets New generate the key (AES-256, sensitive, not extractable, encrypt/decrypt only) when the token has
	// none with KeyLabel. Off, a missing key is an error wrapping keys.ErrKEKKeyMissing.
	CreateKey bool
	// Timeout bounds each operation as the caller sees it (default DefaultTimeout). A PKCS#11 call cannot be interrupted:
	// when ctx or the timeout ends first, the call returns ctx's error and the token call finishes in the background.
	Timeout time.Duration
}

func (c Config) validate() error {
	var missing []string
	if c.Module == "" {
		missing = append(missing, "module")
	}
	if c.TokenLabel == "" {
		missing = append(missing, "token label")
	}
	if c.KeyLabel == "" {
		missing = append(missing, "key label")
	}
	if len(missing) > 0 {
		return fmt.Errorf("pkcs11: %s required", strings.Join(missing, ", "))
	}
	return nil
}

func (c Config) pin() (string, error) {
	if c.PIN != "" {
		return c.PIN, nil
	}
	if c.PINFile == "" {
		return "", errors.New("pkcs11: no user pin (set a pin file, or the pin environment variable)")
	}
	b, err := os.ReadFile(c.PINFile)
	if err != nil {
		return "", fmt.Errorf("pkcs11: read pin file: %w", err)
	}
	p := strings.TrimRight(string(b), "\r\n")
	if p == "" {
		return "", fmt.Errorf("pkcs11: pin file %s is empty", c.PINFile)
	}
	return p, nil
}
