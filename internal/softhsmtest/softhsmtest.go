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

	util, conf, tokens string
}

// Setup writes a SoftHSM2 configuration with its token directory under dir, sets $SOFTHSM2_CONF to it (for this process:
// call it from TestMain, before any PKCS#11 module is initialized) and initializes the token TokenLabel with PIN.
func Setup(dir string) (Env, error) {
	mod, util, err := findSoftHSM()
	if err != nil {
		return Env{}, err
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
	e := Env{Module: mod, Dir: dir, util: util, conf: conf, tokens: tokens}
	if _, err := e.AddToken(TokenLabel); err != nil {
		return Env{}, err
	}
	return e, nil
}

// AddToken initializes one more token, labelled label, with PIN. Call it from TestMain too: a process that initialized
// the module already sees the token only after initializing it again.
func (e Env) AddToken(label string) (*Token, error) {
	before, err := os.ReadDir(e.tokens)
	if err != nil {
		return nil, fmt.Errorf("softhsm: %w", err)
	}
	cmd := exec.Command(e.util, "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", soPIN)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+e.conf)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("softhsm2-util --init-token: %w\n%s", err, b)
	}
	after, err := os.ReadDir(e.tokens)
	if err != nil {
		return nil, fmt.Errorf("softhsm: %w", err)
	}
	seen := map[string]bool{}
	for _, d := range before {
		seen[d.Name()] = true
	}
	for _, d := range after {
		if d.IsDir() && !seen[d.Name()] {
			return &Token{Label: label, dir: filepath.Join(e.tokens, d.Name()), away: filepath.Join(e.Dir, "offline-"+d.Name())}, nil
		}
	}
	return nil, fmt.Errorf("softhsm: token %q initialized, but no new directory in %s", label, e.tokens)
}

// Token is one token of an Env. Remove and Restore take its storage away and give it back: SoftHSM2 keeps a token's
// objects in a directory of its own under the token directory, and a token whose directory is gone is a token whose
// storage failed (a lost disk or network mount under the HSM). It is the real library meeting a real fault: with its
// directory gone, SoftHSM2 lists no objects on the token (without an error) and answers C_GetTokenInfo with
// CKR_GENERAL_ERROR, until the module is initialized again with the directory back.
type Token struct {
	Label     string
	dir, away string
}

// Remove moves the token's directory out of the token directory.
func (t *Token) Remove() error {
	if err := os.Rename(t.dir, t.away); err != nil {
		return fmt.Errorf("softhsm: take token %q away: %w", t.Label, err)
	}
	return nil
}

// Restore moves the token's directory back.
func (t *Token) Restore() error {
	if err := os.Rename(t.away, t.dir); err != nil {
		return fmt.Errorf("softhsm: give token %q back: %w", t.Label, err)
	}
	return nil
}

// Present reports whether the token's directory is in place.
func (t *Token) Present() bool {
	_, err := os.Stat(t.dir)
	return err == nil
}

// findSoftHSM returns the SoftHSM2 library and softhsm2-util, or ErrMissing.
func findSoftHSM() (module, util string, err error) {
	for _, p := range modulePaths {
		if _, err := os.Stat(p); err == nil {
			module = p
			break
		}
	}
	util, err = exec.LookPath("softhsm2-util")
	if module == "" || err != nil {
		return "", "", ErrMissing
	}
	return module, util, nil
}

// Required reports whether a missing SoftHSM2 must fail the tests ($BLINDFOLD_REQUIRE_SOFTHSM=1).
func Required() bool { return os.Getenv(EnvRequire) == "1" }
