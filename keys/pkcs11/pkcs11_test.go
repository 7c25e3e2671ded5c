//go:build cgo

package pkcs11_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	p11 "github.com/miekg/pkcs11"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/softhsmtest"
	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/keys/pkcs11"
)

var (
	hsm softhsmtest.Env
	// outage is a token of its own for TestTokenOutage, which takes it away.
	outage *softhsmtest.Token
	// sessions is a token of its own for TestSessionsClosed, which closes every session of the process on it.
	sessions *softhsmtest.Token
	// remote is a SoftHSM2 token behind p11-kit's remoting (nil, with remoteSkip saying why, when p11-kit is missing).
	remote     *softhsmtest.Remote
	remoteSkip string
)

func TestMain(m *testing.M) {
	os.Unsetenv(keys.MasterKeyEnv)
	os.Unsetenv(keys.KeyDirEnv)
	dir, err := os.MkdirTemp("", "blindfold-softhsm-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hsm, err = softhsmtest.Setup(dir)
	if errors.Is(err, softhsmtest.ErrMissing) && !softhsmtest.Required() {
		fmt.Fprintln(os.Stderr, "skipping the pkcs11 tests:", err)
		os.RemoveAll(dir)
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if outage, err = hsm.AddToken("blindfold-outage"); err == nil {
		sessions, err = hsm.AddToken("blindfold-sessions")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	remote, err = softhsmtest.StartRemote(dir)
	if errors.Is(err, softhsmtest.ErrRemoteMissing) && !softhsmtest.Required() {
		remoteSkip, err = err.Error(), nil
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	if remote != nil {
		_ = remote.Stop()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

var labels atomic.Int64

// config is a KEK configuration for a key of the test's own on the shared SoftHSM token.
func config(t *testing.T) pkcs11.Config {
	return pkcs11.Config{
		Module: hsm.Module, TokenLabel: softhsmtest.TokenLabel, PIN: softhsmtest.PIN,
		KeyLabel: fmt.Sprintf("blindfold-%s-%d", t.Name(), labels.Add(1)), CreateKey: true,
	}
}

func newKEK(t *testing.T, cfg pkcs11.Config) *pkcs11.KEK {
	t.Helper()
	k, err := pkcs11.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

var created = map[string]string{"1": "2026-01-02T03:04:05Z"}

func TestWrapUnwrap(t *testing.T) {
	t.Parallel()
	k := newKEK(t, config(t))
	ctx := context.Background()
	ad := keys.KeysetAD("payments", created)
	ct, err := k.EncryptWithContext(ctx, []byte("a keyset"), ad)
	if err != nil {
		t.Fatal(err)
	}
	ct2, err := k.EncryptWithContext(ctx, []byte("a keyset"), ad)
	if err != nil || string(ct2) == string(ct) {
		t.Fatalf("two wraps of one keyset: equal=%v, %v; want fresh IVs", string(ct2) == string(ct), err)
	}
	pt, err := k.DecryptWithContext(ctx, ct, ad)
	if err != nil || string(pt) != "a keyset" {
		t.Fatalf("decrypt = %q, %v", pt, err)
	}

	// Through a Manager, and a second Manager (a restart) over the same directory.
	dir := t.TempDir()
	m, err := keys.NewManager(keys.NewDirStore(dir), k)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := m.SealingKey(ctx, codec.Target{Namespace: "payments"})
	if err != nil {
		t.Fatal(err)
	}
	m2, err := keys.NewManager(keys.NewDirStore(dir), newKEK(t, pkcs11.Config{Module: hsm.Module, TokenLabel: softhsmtest.TokenLabel,
		PIN: softhsmtest.PIN, KeyLabel: k.KeyLabel()}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m2.OpeningKey(ctx, "payments", sk.ID); err != nil {
		t.Fatalf("opening key in a restarted manager: %v", err)
	}
}

func TestRejected(t *testing.T) {
	t.Parallel()
	k := newKEK(t, config(t))
	other := newKEK(t, config(t))
	ctx := context.Background()
	ad := keys.KeysetAD("payments", created)
	ct, err := k.EncryptWithContext(ctx, []byte("a keyset"), ad)
	if err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte(nil), ct...)
	tampered[len(tampered)-1] ^= 1
	for _, tc := range []struct {
		name string
		kek  *pkcs11.KEK
		ct   []byte
		ad   []byte
	}{
		{"other scope", k, ct, keys.KeysetAD("hr", created)},
		{"tampered", k, tampered, ad},
		{"other key", other, ct, ad},
		{"truncated", k, ct[:20], ad},
		{"unknown format", k, append([]byte{9}, ct[1:]...), ad},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.kek.DecryptWithContext(ctx, tc.ct, tc.ad)
			if !errors.Is(err, keys.ErrUnwrap) {
				t.Fatalf("decrypt: %v; want keys.ErrUnwrap", err)
			}
		})
	}
	if _, err := k.EncryptWithContext(ctx, []byte("x"), []byte("not a keyset")); err == nil {
		t.Error("encrypt with associated data that names no scope succeeded")
	}
}

// TestDestroyKey is the HSM shred: destroying the token key makes every keyset it wrapped count as shredded, the copies in
// a backup of the key directory included.
func TestDestroyKey(t *testing.T) {
	t.Parallel()
	cfg := config(t)
	k := newKEK(t, cfg)
	ctx := context.Background()
	dir := t.TempDir()
	m, err := keys.NewManager(keys.NewDirStore(dir), k)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := m.SealingKey(ctx, codec.Target{Namespace: "payments"})
	if err != nil {
		t.Fatal(err)
	}
	if err := k.DestroyKey(ctx); err != nil {
		t.Fatal(err)
	}
	m2, err := keys.NewManager(keys.NewDirStore(dir), k)
	if err != nil {
		t.Fatal(err)
	}
	_, err = m2.OpeningKey(ctx, "payments", sk.ID)
	if !errors.Is(err, codec.ErrKeyDestroyed) || !strings.Contains(err.Error(), cfg.KeyLabel) {
		t.Fatalf("opening key after the token key was destroyed: %v; want codec.ErrKeyDestroyed naming the key", err)
	}
	if err := k.DestroyKey(ctx); !errors.Is(err, keys.ErrKEKKeyMissing) {
		t.Errorf("second destroy: %v; want keys.ErrKEKKeyMissing", err)
	}
	cfg.CreateKey = false
	k2 := newKEK(t, cfg) // starts: the Manager, not New, reports the destroyed key
	if _, err := k2.DecryptWithContext(ctx, []byte{1}, keys.KeysetAD("payments", created)); !errors.Is(err, keys.ErrUnwrap) {
		t.Errorf("decrypt of a malformed ciphertext: %v; want keys.ErrUnwrap", err)
	}
	if _, err := k2.EncryptWithContext(ctx, []byte("x"), keys.KeysetAD("payments", created)); !errors.Is(err, keys.ErrKEKKeyMissing) {
		t.Errorf("encrypt without the key: %v; want keys.ErrKEKKeyMissing", err)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	good := config(t)
	pinFile := t.TempDir() + "/pin"
	if err := os.WriteFile(pinFile, []byte(softhsmtest.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(*pkcs11.Config)
		want   string
	}{
		{"no module", func(c *pkcs11.Config) { c.Module = "" }, "module"},
		{"bad module", func(c *pkcs11.Config) { c.Module = "/nonexistent/lib.so" }, "cannot load module"},
		{"no token", func(c *pkcs11.Config) { c.TokenLabel = "nope" }, `no token labelled "nope"`},
		{"no pin", func(c *pkcs11.Config) { c.PIN = "" }, "no user pin"},
	} {
		cfg := good
		tc.change(&cfg)
		k, err := pkcs11.New(ctx, cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, keys.ErrUnwrap) {
			t.Errorf("%s: %v; want an error containing %q", tc.name, err, tc.want)
		}
		if k != nil {
			k.Close()
		}
	}
	cfg := good
	cfg.PIN, cfg.PINFile = "", pinFile
	newKEK(t, cfg)
}

func TestContextHonoured(t *testing.T) {
	t.Parallel()
	k := newKEK(t, config(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := k.EncryptWithContext(ctx, []byte("x"), keys.KeysetAD("payments", created)); !errors.Is(err, context.Canceled) {
		t.Errorf("encrypt with a cancelled ctx: %v; want context.Canceled", err)
	}
}

// TestTokenOutage takes a token's storage away and gives it back (softhsmtest.Token: SoftHSM2 with the token's directory
// gone lists no objects and answers C_GetTokenInfo with CKR_GENERAL_ERROR, until the module is initialized again). While
// it is away, calls fail at once naming the token and the module, and never pass for a destroyed key (which the Manager
// would count as a shred) nor a rejected ciphertext. Once it is back, the KEK's next call succeeds: the module is
// initialized again, the token found again, a session opened again. A KEK on another token of the module works
// throughout, although each re-initialization voids its session under it; the package's parallel tests meanwhile use
// the module too.
func TestTokenOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := pkcs11.Config{Module: hsm.Module, TokenLabel: outage.Label, PIN: softhsmtest.PIN,
		KeyLabel: fmt.Sprintf("blindfold-%s-%d", t.Name(), labels.Add(1)), CreateKey: true}
	k := newKEK(t, cfg)
	other := newKEK(t, config(t))
	ad := keys.KeysetAD("payments", created)
	ct, err := k.EncryptWithContext(ctx, []byte("a keyset"), ad)
	if err != nil {
		t.Fatal(err)
	}
	otherCT, err := other.EncryptWithContext(ctx, []byte("another keyset"), ad)
	if err != nil {
		t.Fatal(err)
	}

	if err := outage.Remove(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !outage.Present() {
			_ = outage.Restore()
		}
	})
	for i := range 3 {
		began := time.Now()
		_, err := k.DecryptWithContext(ctx, ct, ad)
		took := time.Since(began)
		if err == nil || errors.Is(err, keys.ErrKEKKeyMissing) || errors.Is(err, keys.ErrUnwrap) || errors.Is(err, context.DeadlineExceeded) ||
			!strings.Contains(err.Error(), `token "`+outage.Label+`"`) || !strings.Contains(err.Error(), hsm.Module) {
			t.Errorf("decrypt %d with the token's storage gone: %v; want a failure naming the token and the module, neither a missing key, a rejection nor a timeout", i, err)
		}
		if i == 0 {
			t.Logf("with the token's storage gone (%s): %v", took.Round(time.Microsecond), err)
		}
		if _, err := k.EncryptWithContext(ctx, []byte("x"), ad); err == nil || errors.Is(err, keys.ErrKEKKeyMissing) {
			t.Errorf("encrypt %d with the token's storage gone: %v; want a failure, not a missing key", i, err)
		}
		if pt, err := other.DecryptWithContext(ctx, otherCT, ad); err != nil || string(pt) != "another keyset" {
			t.Errorf("decrypt %d on the other token = %q, %v", i, pt, err)
		}
	}
	if err := k.DestroyKey(ctx); err == nil || errors.Is(err, keys.ErrKEKKeyMissing) {
		t.Errorf("destroy with the token's storage gone: %v; want a failure, not a missing key", err)
	}

	if err := outage.Restore(); err != nil {
		t.Fatal(err)
	}
	if pt, err := k.DecryptWithContext(ctx, ct, ad); err != nil || string(pt) != "a keyset" {
		t.Fatalf("first decrypt with the token back = %q, %v", pt, err)
	}
	if _, err := k.DecryptWithContext(ctx, ct, keys.KeysetAD("hr", created)); !errors.Is(err, keys.ErrUnwrap) {
		t.Errorf("decrypt for another scope with the token back: %v; want keys.ErrUnwrap", err)
	}
	if pt, err := other.DecryptWithContext(ctx, otherCT, ad); err != nil || string(pt) != "another keyset" {
		t.Errorf("decrypt on the other token after = %q, %v", pt, err)
	}
}

// TestRemoteDeviceLoss takes a network HSM away and brings it back: SoftHSM2 served over a unix socket by p11-kit's
// server (softhsmtest.Remote), the KEK on p11-kit's client module, the server killed with its per-connection processes
// and started again. While it is down, calls fail at once with CKR_DEVICE_ERROR, named with the token and the module,
// never as a missing key; once it is back, the next call succeeds, although the client module answers nothing until it
// is initialized again. p11-kit 0.24 does not forward AES-GCM's parameters, so this runs the calls that need none: the
// key's lookup, creation and destruction (the workflow-level outage test, internal/e2e/keyse2e, covers wrapping with the
// token's storage taken away).
func TestRemoteDeviceLoss(t *testing.T) {
	if remote == nil {
		t.Skip("skipping the remote HSM outage:", remoteSkip)
	}
	ctx := context.Background()
	cfg := pkcs11.Config{Module: remote.ClientModule, TokenLabel: softhsmtest.RemoteTokenLabel, PIN: softhsmtest.PIN,
		KeyLabel: fmt.Sprintf("blindfold-%s-%d", t.Name(), labels.Add(1)), CreateKey: true, Timeout: 5 * time.Second}
	k := newKEK(t, cfg)
	_, err := k.EncryptWithContext(ctx, []byte("x"), keys.KeysetAD("payments", created))
	t.Logf("wrap through p11-kit's remoting: %v", err)

	if err := remote.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !remote.Running() {
			_ = remote.Start()
		}
	})
	for i := range 2 {
		began := time.Now()
		err := k.DestroyKey(ctx)
		took := time.Since(began)
		if err == nil || errors.Is(err, keys.ErrKEKKeyMissing) || errors.Is(err, context.DeadlineExceeded) ||
			!strings.Contains(err.Error(), `token "`+softhsmtest.RemoteTokenLabel+`"`) || !strings.Contains(err.Error(), remote.ClientModule) {
			t.Errorf("destroy %d with the HSM down: %v; want a failure naming the token and the module, neither a missing key nor a timeout", i, err)
		}
		if i == 0 {
			t.Logf("with the HSM down (%s): %v", took.Round(time.Microsecond), err)
		}
	}
	if _, err := pkcs11.New(ctx, cfg); err == nil {
		t.Error("new KEK with the HSM down: no error")
	}

	if err := remote.Start(); err != nil {
		t.Fatal(err)
	}
	if err := k.DestroyKey(ctx); err != nil {
		t.Fatalf("first destroy with the HSM back: %v", err)
	}
	if err := k.DestroyKey(ctx); !errors.Is(err, keys.ErrKEKKeyMissing) {
		t.Errorf("second destroy with the HSM back: %v; want keys.ErrKEKKeyMissing", err)
	}
}

// TestSessionsClosed closes every session of the process on a token under two KEKs (C_CloseAllSessions, through the
// module the process shares, as a token that dropped its sessions would): each KEK's next call opens a new session,
// logs in and succeeds, instead of failing once with CKR_SESSION_HANDLE_INVALID. Not parallel: its calls on the module
// bypass the KEKs' lock, so they must not overlap TestTokenOutage's re-initialization.
func TestSessionsClosed(t *testing.T) {
	ctx := context.Background()
	cfg := func() pkcs11.Config {
		return pkcs11.Config{Module: hsm.Module, TokenLabel: sessions.Label, PIN: softhsmtest.PIN,
			KeyLabel: fmt.Sprintf("blindfold-%s-%d", t.Name(), labels.Add(1)), CreateKey: true}
	}
	k1, k2 := newKEK(t, cfg()), newKEK(t, cfg())
	ad := keys.KeysetAD("payments", created)
	ct1, err := k1.EncryptWithContext(ctx, []byte("one"), ad)
	if err != nil {
		t.Fatal(err)
	}
	ct2, err := k2.EncryptWithContext(ctx, []byte("two"), ad)
	if err != nil {
		t.Fatal(err)
	}

	c, slot := moduleSlot(t, sessions.Label)
	if err := c.CloseAllSessions(slot); err != nil {
		t.Fatal(err)
	}

	if pt, err := k1.DecryptWithContext(ctx, ct1, ad); err != nil || string(pt) != "one" {
		t.Errorf("first decrypt after the sessions were closed = %q, %v", pt, err)
	}
	if pt, err := k2.DecryptWithContext(ctx, ct2, ad); err != nil || string(pt) != "two" {
		t.Errorf("second KEK's first decrypt after the sessions were closed = %q, %v", pt, err)
	}
}

// TestHungTokenIsolated: a network HSM that stops answering (p11-kit's server, SIGSTOPped) holds up only its own
// module, and only until each call's deadline: a call of another KEK on that module, queued behind the hung one, gives
// up with its timeout, and KEKs on another module (the local SoftHSM2) keep answering meanwhile, a key destruction
// there included (it excludes every other call of its own module only). Not parallel, like TestRemoteDeviceLoss.
func TestHungTokenIsolated(t *testing.T) {
	if remote == nil {
		t.Skip("skipping the hung remote HSM:", remoteSkip)
	}
	ctx := context.Background()
	const timeout = 500 * time.Millisecond
	remoteKEK := func() *pkcs11.KEK {
		return newKEK(t, pkcs11.Config{Module: remote.ClientModule, TokenLabel: softhsmtest.RemoteTokenLabel, PIN: softhsmtest.PIN,
			KeyLabel: fmt.Sprintf("blindfold-%s-%d", t.Name(), labels.Add(1)), CreateKey: true, Timeout: timeout})
	}
	hung, queued := remoteKEK(), remoteKEK()
	local, doomed := newKEK(t, config(t)), newKEK(t, config(t))
	ad := keys.KeysetAD("payments", created)
	if err := remote.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := remote.Resume(); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(resume)
	// A destruction that hangs in the remote module, holding all of it.
	hangs := make(chan error, 1)
	go func() { hangs <- hung.DestroyKey(ctx) }()
	time.Sleep(50 * time.Millisecond) // let it reach the token: nothing below depends on it, it only makes the case real

	began := time.Now()
	if err := doomed.DestroyKey(ctx); err != nil {
		t.Errorf("a key destruction on another module while the remote HSM hangs: %v", err)
	}
	if _, err := local.EncryptWithContext(ctx, []byte("during"), ad); err != nil {
		t.Errorf("a KEK on another module while the remote HSM hangs: %v", err)
	}
	if took := time.Since(began); took > timeout {
		t.Errorf("the other module's calls took %v while the remote HSM hangs", took)
	}
	began = time.Now()
	_, err := queued.EncryptWithContext(ctx, []byte("queued"), ad)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a call queued behind the hung one: %v; want its timeout", err)
	}
	if took := time.Since(began); took > 4*timeout {
		t.Errorf("a call queued behind the hung one took %v; want about its timeout (%v)", took, timeout)
	}
	if err := <-hangs; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the hung call: %v; want the timeout", err)
	}
	resume()
}

// TestLoggedOutIsNotShredded: a token that logs the application out (C_Logout ends the login of every session on it)
// hides the private key from the KEK's session. That must not read as a destroyed key — the Manager would take the
// scope for shredded — but as a lost login: the next call logs in on a new session and succeeds. Not parallel, like
// TestSessionsClosed (its calls bypass the KEKs' lock).
func TestLoggedOutIsNotShredded(t *testing.T) {
	ctx := context.Background()
	k := newKEK(t, pkcs11.Config{Module: hsm.Module, TokenLabel: sessions.Label, PIN: softhsmtest.PIN,
		KeyLabel: fmt.Sprintf("blindfold-%s-%d", t.Name(), labels.Add(1)), CreateKey: true})
	ad := keys.KeysetAD("payments", created)
	ct, err := k.EncryptWithContext(ctx, []byte("logged in"), ad)
	if err != nil {
		t.Fatal(err)
	}
	c, slot := moduleSlot(t, sessions.Label)
	sh, err := c.OpenSession(slot, p11.CKF_SERIAL_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Logout(sh); err != nil {
		t.Fatal(err)
	}
	_ = c.CloseSession(sh)
	pt, err := k.DecryptWithContext(ctx, ct, ad)
	if errors.Is(err, keys.ErrKEKKeyMissing) {
		t.Fatalf("decrypt after a logout: %v; a lost login passed for a destroyed key", err)
	}
	if err != nil || string(pt) != "logged in" {
		t.Errorf("decrypt after a logout = %q, %v", pt, err)
	}
}

// moduleSlot returns a handle on the SoftHSM2 library the KEKs use (it is loaded and initialized already: this handle
// reaches the same instance, and is never finalized) and the slot of the token labelled label, for calls that bypass
// the KEKs.
func moduleSlot(t *testing.T, label string) (*p11.Ctx, uint) {
	t.Helper()
	c := p11.New(hsm.Module)
	if err := c.Initialize(); err != nil && !errors.Is(err, p11.Error(p11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		t.Fatal(err)
	}
	slots, err := c.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if ti, err := c.GetTokenInfo(s); err == nil && ti.Label == label {
			return c, s
		}
	}
	t.Fatalf("token %q not among slots %v", label, slots)
	return nil, 0
}
