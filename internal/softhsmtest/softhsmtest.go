// Package softhsmtest sets up SoftHSM2 (Debian package softhsm2), a real PKCS#11 token in software, for tests: a
// configuration and token directory of the test binary's own, pointed at by $SOFTHSM2_CONF, and one initialized token.
// It runs softhsm2-util and needs no cgo; the tests that load the module do.
package softhsmtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// EnvRequire, when set to 1 (scripts/test sets it), makes a missing SoftHSM2 an error instead of a skip.
const EnvRequire = "BLINDFOLD_REQUIRE_SOFTHSM"

// Token is the token Setup initialized.
const (
	TokenLabel = "blindfold-test"
	PIN        = "1234"
	soPIN      = "123456"
)

// Module paths of the SoftHSM2 library, Debian's first.
var modulePaths = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
}

// ErrMissing: SoftHSM2 is not installed.
var ErrMissing = errors.New("softhsm2 not installed (apt-get install softhsm2)")

// Env is a SoftHSM2 set-up.
type Env struct {
	// Module is the path of libsofthsm2.so.
	Module string
	// Dir holds the configuration and the token directory; removing it removes the token.
	Dir string
}

// Setup writes a SoftHSM2 configuration with its token directory under dir, sets $SOFTHSM2_CONF to it (for this process:
// call it from TestMain, before any PKCS#11 module is initialized) and initializes the token TokenLabel with PIN.
func Setup(dir string) (Env, error) {
	mod := ""
	for _, p := range modulePaths {
		if _, err := os.Stat(p); err == nil {
			mod = p
			break
		}
	}
	util, err := exec.LookPath("softhsm2-util")
	if mod == "" || err != nil {
		return Env{}, ErrMissing
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return Env{}, fmt.Errorf("softhsm: %w", err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return Env{}, fmt.Errorf("softhsm: %w", err)
	}
	if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
		return Env{}, err
	}
	cmd := exec.Command(util, "--init-token", "--free", "--label", TokenLabel, "--pin", PIN, "--so-pin", soPIN)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if b, err := cmd.CombinedOutput(); err != nil {
		return Env{}, fmt.Errorf("softhsm2-util --init-token: %w\n%s", err, b)
	}
	return Env{Module: mod, Dir: dir}, nil
}

// Required reports whether a missing SoftHSM2 must fail the tests ($BLINDFOLD_REQUIRE_SOFTHSM=1).
func Required() bool { return os.Getenv(EnvRequire) == "1" }
