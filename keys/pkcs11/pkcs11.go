//go:build cgo

package pkcs11

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	p11 "github.com/miekg/pkcs11"
	"golang.org/x/sync/semaphore"

	"github.com/blindfold-dev/blindfold/keys"
)

// Ciphertext layout: version byte, 12-byte GCM IV, ciphertext with its 16-byte tag.
const (
	formatV1 = 1
	ivSize   = 12
	tagBits  = 128
)

// KEK wraps scope keysets with an AES key on a PKCS#11 token; see the package documentation. It is safe for concurrent use:
// calls are serialized on one session (KEK calls happen only when a scope is loaded, created, rotated or shredded).
type KEK struct {
	cfg     Config
	pin     string
	timeout time.Duration
	mod     *module
	ctx     *p11.Ctx // mod.ctx

	sem chan struct{} // one token operation at a time; acquired with select so ctx is honoured while waiting
	// The fields below are the KEK's view of the module, valid for the module's initialization gen (under sem, and
	// the module's calls, either side): after a re-initialization the slot may be numbered anew and every session handle is void.
	gen     uint64
	slot    uint
	slotOK  bool
	session p11.SessionHandle
	open    bool
}

var _ keys.KEK = (*KEK)(nil)

// module is one loaded PKCS#11 library. C_Initialize and C_Finalize are process-wide per library, so every KEK on one
// module shares it. It is finalized only to re-initialize it, when it reports that it lost its device (see recover).
type module struct {
	path string
	ctx  *p11.Ctx
	// calls: every token call on the module holds one unit of it (the read side). What must not overlap any other call
	// holds all of it (the write side): calls that add or remove token objects (SoftHSM2's file object store answers a
	// key generation that overlaps another session's calls on the token with CKR_GENERAL_ERROR), and re-initializing
	// the module. Both happen only when a key is created or destroyed, or a device was lost, so at steady state no call
	// waits. It is per module, and taken with the call's context: a token that hangs in one call (a network HSM that
	// stopped answering) makes a writer wait, and the calls queued behind it, only until their deadlines, and never
	// stalls the KEKs of another module.
	calls *semaphore.Weighted
	// gen counts re-initializations; read under calls (either side), written under its write side.
	gen uint64
}

// allCalls is the write side of module.calls.
const allCalls = 1 << 30

// lock takes the read side of m's calls, or the write side, until ctx ends.
func (m *module) lock(ctx context.Context, write bool) (unlock func(), err error) {
	n := int64(1)
	if write {
		n = allCalls
	}
	if err := m.calls.Acquire(ctx, n); err != nil {
		return nil, fmt.Errorf("pkcs11: wait for the other calls on module %s: %w", m.path, err)
	}
	return func() { m.calls.Release(n) }, nil
}

// modules keeps one module per path.
var (
	modulesMu sync.Mutex
	modules   = map[string]*module{}
)

func loadModule(path string) (*module, error) {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	if m := modules[path]; m != nil {
		return m, nil
	}
	c := p11.New(path)
	if c == nil {
		return nil, fmt.Errorf("pkcs11: cannot load module %s", path)
	}
	if err := c.Initialize(); err != nil && !isCode(err, p11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		c.Destroy()
		return nil, fmt.Errorf("pkcs11: initialize module %s: %w", path, err)
	}
	m := &module{path: path, ctx: c, calls: semaphore.NewWeighted(allCalls)}
	modules[path] = m
	return m, nil
}

// reinitialize finalizes and initializes the module again, unless another KEK did so since seen was read: the way back
// for a module whose device went away. Modules do not all come back by themselves: SoftHSM2 whose token directory went
// away and came back still lists no objects on the token, and p11-kit's client module (a token served over a socket)
// still answers CKR_DEVICE_ERROR, or lists no slot, after its server is back, until the module is initialized again.
// It excludes every other token call of the process, because C_Finalize must not overlap calls on the module, and it
// voids every session of every KEK on the module, which the KEKs notice by the changed gen.
func (m *module) reinitialize(ctx context.Context, seen uint64) error {
	unlock, err := m.lock(ctx, true)
	if err != nil {
		return err
	}
	defer unlock()
	if m.gen != seen {
		return nil
	}
	m.gen++
	_ = m.ctx.Finalize() // fails when the module is not initialized (a failed Initialize before): that is fine
	if err := m.ctx.Initialize(); err != nil && !isCode(err, p11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		return fmt.Errorf("pkcs11: initialize module %s again: %w", m.path, err)
	}
	return nil
}

// New loads the module, finds the token and logs in. With cfg.CreateKey it generates the key when the token has none with
// the label. A missing key is not an error here: every later call returns keys.ErrKEKKeyMissing, so a gateway whose token
// key was destroyed starts and reports its scopes as shredded, like one whose KMS key was deleted.
func New(ctx context.Context, cfg Config) (*KEK, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	pin, err := cfg.pin()
	if err != nil {
		return nil, err
	}
	m, err := loadModule(cfg.Module)
	if err != nil {
		return nil, err
	}
	k := &KEK{cfg: cfg, pin: pin, timeout: cfg.Timeout, mod: m, ctx: m.ctx, sem: make(chan struct{}, 1)}
	if k.timeout <= 0 {
		k.timeout = DefaultTimeout
	}
	// New neither re-initializes the module nor retries: a token that is not there at start is a configuration to check
	// (or an HSM to bring up) before the gateway starts.
	err = k.run(ctx, opWrite|opNoRecover, func() error {
		_, err := k.findKey()
		if errors.Is(err, keys.ErrKEKKeyMissing) {
			if cfg.CreateKey {
				return k.createKey()
			}
			return nil
		}
		return err
	})
	if err != nil {
		k.Close()
		return nil, err
	}
	return k, nil
}

// errNoToken: no slot holds a token with the label. After New, it means the token went away (a network HSM's client
// lists no slot while its server is unreachable), which is one of the losses recover handles.
var errNoToken = errors.New("token not found")

// errTokenLost: the token the KEK's session is on stopped answering as itself (see tokenThere).
var errTokenLost = errors.New("token lost")

func findToken(c *p11.Ctx, label string) (uint, error) {
	slots, err := c.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("pkcs11: list slots: %w", err)
	}
	for _, s := range slots {
		ti, err := c.GetTokenInfo(s)
		if err == nil && ti.Label == label {
			return s, nil
		}
	}
	return 0, fmt.Errorf("pkcs11: %w: no token labelled %q among %d slots with a token", errNoToken, label, len(slots))
}

// Close closes the KEK's session (it does not log out: login state is shared by every session of the process). A token
// busy past the timeout (a call hanging in it) leaves the session open, and Close says so.
func (k *KEK) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), k.timeout)
	defer cancel()
	select {
	case k.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("pkcs11: close: a call on token %q did not end: %w", k.cfg.TokenLabel, ctx.Err())
	}
	defer func() { <-k.sem }()
	unlock, err := k.mod.lock(ctx, false)
	if err != nil {
		return fmt.Errorf("pkcs11: close: %w", err)
	}
	defer unlock()
	k.sync()
	k.dropSession()
	return nil
}

// KeyLabel is the configured key label.
func (k *KEK) KeyLabel() string { return k.cfg.KeyLabel }

// Options of run.
const (
	opWrite     = 1 << iota // op may create or destroy token objects: exclusive, and never retried
	opNoRecover             // no re-initialization of the module and no retry (New)
)

// do runs op with the session held, bounded by ctx and the timeout.
func (k *KEK) do(ctx context.Context, op func() error) error { return k.run(ctx, 0, op) }

// doWrite is do for an op that may create or destroy token objects.
func (k *KEK) doWrite(ctx context.Context, op func() error) error { return k.run(ctx, opWrite, op) }

func (k *KEK) run(ctx context.Context, opts int, op func() error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pkcs11: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	select {
	case k.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("pkcs11: wait for the token: %w", ctx.Err())
	}
	done := make(chan error, 1)
	go func() {
		defer func() { <-k.sem }()
		gen, ran, err := k.attempt(ctx, opts&opWrite != 0, op)
		if opts&opNoRecover == 0 && ctx.Err() == nil {
			// Not once the caller has gone: a re-initialization or a repeated call nobody waits for would only
			// hold up the module's other calls.
			err = k.recover(ctx, opts&opWrite != 0 && ran, opts&opWrite != 0, op, err, gen)
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("pkcs11: token did not answer: %w", ctx.Err())
	}
}

// attempt runs op once, on the token and session of the module's current initialization, and returns the initialization
// it ran in, whether op ran (or finding the token or opening the session failed before), and the error.
func (k *KEK) attempt(ctx context.Context, write bool, op func() error) (gen uint64, ran bool, err error) {
	unlock, err := k.mod.lock(ctx, write)
	if err != nil {
		return k.gen, false, err
	}
	defer unlock()
	k.sync()
	if !k.slotOK {
		slot, err := findToken(k.ctx, k.cfg.TokenLabel)
		if err != nil {
			return k.gen, false, err
		}
		k.slot, k.slotOK = slot, true
	}
	if err := k.ensureSession(); err != nil {
		return k.gen, false, err
	}
	err = op()
	if isSessionError(err) {
		k.dropSession() // the next call opens a new one
	}
	if isDeviceLost(err) {
		k.slotOK = false // and finds the token again
	}
	return k.gen, true, err
}

// sync forgets the slot and session of an earlier initialization of the module (not closing the session: its handle is
// void, and may now be another KEK's). Called with the module's calls held.
func (k *KEK) sync() {
	if k.gen != k.mod.gen {
		k.gen, k.slotOK, k.open = k.mod.gen, false, false
	}
}

// recover handles err, the error of an attempt in initialization gen. A lost device (CKR_DEVICE_ERROR and the like, or
// the token gone from the slot list: a network HSM down or restarted) re-initializes the module; then, as after a lost
// session, op runs once more, on a new session, unless wrote (op writes token objects and ran: a generation that failed
// midway may have happened). The error of a call that still fails names the token and the module, and keeps the first
// failure.
func (k *KEK) recover(ctx context.Context, wrote, write bool, op func() error, err error, gen uint64) error {
	lost := isDeviceLost(err)
	if !lost && !isSessionError(err) {
		return err
	}
	if lost {
		if rerr := k.mod.reinitialize(ctx, gen); rerr != nil {
			return fmt.Errorf("pkcs11: token %q of module %s unavailable: %w; then: %w", k.cfg.TokenLabel, k.cfg.Module, err, rerr)
		}
	}
	if wrote {
		return fmt.Errorf("pkcs11: token %q of module %s unavailable: %w", k.cfg.TokenLabel, k.cfg.Module, err)
	}
	_, _, retryErr := k.attempt(ctx, write, op)
	if retryErr == nil || !isDeviceLost(retryErr) && !isSessionError(retryErr) {
		return retryErr // recovered, or an answer of the token (a rejected ciphertext, a missing key)
	}
	then := "after opening a new session"
	if lost {
		then = "after initializing the module again"
	}
	return fmt.Errorf("pkcs11: token %q of module %s unavailable: %w; %s: %w", k.cfg.TokenLabel, k.cfg.Module, err, then, retryErr)
}

func (k *KEK) ensureSession() error {
	if k.open {
		return nil
	}
	sh, err := k.ctx.OpenSession(k.slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION) // read-write: CreateKey and DestroyKey need it
	if err != nil {
		return fmt.Errorf("pkcs11: open session on token %q: %w", k.cfg.TokenLabel, err)
	}
	if err := k.ctx.Login(sh, p11.CKU_USER, k.pin); err != nil && !isCode(err, p11.CKR_USER_ALREADY_LOGGED_IN) {
		_ = k.ctx.CloseSession(sh)
		return fmt.Errorf("pkcs11: log in to token %q: %w", k.cfg.TokenLabel, err)
	}
	k.session, k.open = sh, true
	return nil
}

func (k *KEK) dropSession() {
	if k.open {
		_ = k.ctx.CloseSession(k.session)
		k.open = false
	}
}

// findKey returns the handle of the one AES secret key labelled KeyLabel. Called with the session held.
func (k *KEK) findKey() (p11.ObjectHandle, error) {
	tmpl := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_LABEL, k.cfg.KeyLabel),
	}
	if err := k.ctx.FindObjectsInit(k.session, tmpl); err != nil {
		return 0, fmt.Errorf("pkcs11: find key %q: %w", k.cfg.KeyLabel, err)
	}
	objs, _, err := k.ctx.FindObjects(k.session, 2)
	if ferr := k.ctx.FindObjectsFinal(k.session); err == nil {
		err = ferr
	}
	switch {
	case err != nil:
		return 0, fmt.Errorf("pkcs11: find key %q: %w", k.cfg.KeyLabel, err)
	case len(objs) == 0:
		// A token that lost its storage may list no objects without an error (SoftHSM2 with its token directory gone
		// does): only a token still there, by its label, tells that the key is not. A missing key counts as a shred, so
		// an outage must never pass for one.
		if err := k.tokenThere(); err != nil {
			return 0, fmt.Errorf("pkcs11: find key %q: %w", k.cfg.KeyLabel, err)
		}
		// Nor may a session that is not logged in any more (a token that logged its sessions out), or that is not on
		// the KEK's slot: the key is private, and such a session does not see it.
		if err := k.sessionLoggedIn(); err != nil {
			return 0, fmt.Errorf("pkcs11: find key %q: %w", k.cfg.KeyLabel, err)
		}
		return 0, fmt.Errorf("%w: pkcs11: no secret key labelled %q on token %q (destroyed, or never created)", keys.ErrKEKKeyMissing, k.cfg.KeyLabel, k.cfg.TokenLabel)
	case len(objs) > 1:
		return 0, fmt.Errorf("pkcs11: more than one secret key labelled %q on token %q; labels must be unique", k.cfg.KeyLabel, k.cfg.TokenLabel)
	}
	attrs, err := k.ctx.GetAttributeValue(k.session, objs[0], []*p11.Attribute{p11.NewAttribute(p11.CKA_KEY_TYPE, nil)})
	if err != nil {
		return 0, fmt.Errorf("pkcs11: read key %q: %w", k.cfg.KeyLabel, err)
	}
	if len(attrs) != 1 || len(attrs[0].Value) == 0 || attrs[0].Value[0] != byte(p11.CKK_AES) {
		return 0, fmt.Errorf("pkcs11: key %q on token %q is not an AES key", k.cfg.KeyLabel, k.cfg.TokenLabel)
	}
	return objs[0], nil
}

// sessionLoggedIn checks that the KEK's session is a logged-in read-write user session on its slot; otherwise the error
// is CKR_USER_NOT_LOGGED_IN, a session error: the call is retried on a new session. Called with the session held.
func (k *KEK) sessionLoggedIn() error {
	info, err := k.ctx.GetSessionInfo(k.session)
	if err != nil {
		return fmt.Errorf("session info: %w", err)
	}
	if info.SlotID != k.slot || info.State != p11.CKS_RW_USER_FUNCTIONS {
		return fmt.Errorf("session on slot %d in state %d, not logged in on slot %d: %w", info.SlotID, info.State, k.slot, p11.Error(p11.CKR_USER_NOT_LOGGED_IN))
	}
	return nil
}

// tokenThere checks that the KEK's slot still holds its token. Called with the session held.
func (k *KEK) tokenThere() error {
	ti, err := k.ctx.GetTokenInfo(k.slot)
	if err != nil {
		return fmt.Errorf("%w: token %q lists no objects and answers no token info: %w", errTokenLost, k.cfg.TokenLabel, err)
	}
	if ti.Label != k.cfg.TokenLabel {
		return fmt.Errorf("%w: the slot of token %q now holds token %q", errTokenLost, k.cfg.TokenLabel, ti.Label)
	}
	return nil
}

// EncryptWithContext wraps plaintext with AES-GCM on the token, associatedData (naming the scope) as additional data.
func (k *KEK) EncryptWithContext(ctx context.Context, plaintext, associatedData []byte) ([]byte, error) {
	if _, err := keys.ScopeOfKeysetAD(associatedData); err != nil {
		return nil, fmt.Errorf("pkcs11: %w", err)
	}
	iv := make([]byte, ivSize)
	if _, err := rand.Read(iv); err != nil {
		return nil, fmt.Errorf("pkcs11: generate iv: %w", err)
	}
	var out []byte
	err := k.do(ctx, func() error {
		key, err := k.findKey()
		if err != nil {
			return err
		}
		params := p11.NewGCMParams(iv, associatedData, tagBits)
		defer params.Free()
		if err := k.ctx.EncryptInit(k.session, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_GCM, params)}, key); err != nil {
			return fmt.Errorf("pkcs11: encrypt with key %q: C_EncryptInit: %w", k.cfg.KeyLabel, err)
		}
		ct, err := k.ctx.Encrypt(k.session, plaintext)
		if err != nil {
			return fmt.Errorf("pkcs11: encrypt with key %q: %w", k.cfg.KeyLabel, err)
		}
		out = make([]byte, 0, 1+ivSize+len(ct))
		out = append(append(append(out, formatV1), iv...), ct...)
		return nil
	})
	return out, err
}

// DecryptWithContext unwraps ciphertext on the token. A ciphertext the token does not authenticate wraps keys.ErrUnwrap, a
// missing key keys.ErrKEKKeyMissing; token, session and login failures are neither.
func (k *KEK) DecryptWithContext(ctx context.Context, ciphertext, associatedData []byte) ([]byte, error) {
	if _, err := keys.ScopeOfKeysetAD(associatedData); err != nil {
		return nil, fmt.Errorf("pkcs11: %w", err)
	}
	if len(ciphertext) < 1+ivSize+tagBits/8 || ciphertext[0] != formatV1 {
		return nil, fmt.Errorf("%w: pkcs11: not a ciphertext of this kek (format or length)", keys.ErrUnwrap)
	}
	iv, body := ciphertext[1:1+ivSize], ciphertext[1+ivSize:]
	var out []byte
	err := k.do(ctx, func() error {
		key, err := k.findKey()
		if err != nil {
			return err
		}
		params := p11.NewGCMParams(iv, associatedData, tagBits)
		defer params.Free()
		if err := k.ctx.DecryptInit(k.session, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_GCM, params)}, key); err != nil {
			return fmt.Errorf("pkcs11: decrypt with key %q: C_DecryptInit: %w", k.cfg.KeyLabel, err)
		}
		pt, err := k.ctx.Decrypt(k.session, body)
		rejected := isCode(err, p11.CKR_ENCRYPTED_DATA_INVALID) || isCode(err, p11.CKR_ENCRYPTED_DATA_LEN_RANGE) || isCode(err, ckrAEADDecryptFailed)
		if !rejected && isCode(err, p11.CKR_GENERAL_ERROR) {
			// Some tokens (SoftHSM2) report a failed GCM tag check only as CKR_GENERAL_ERROR, which a broken token reports too.
			// Tell them apart: if the same key still round-trips a probe now, the token works and it was the ciphertext.
			rejected = k.probe(key) == nil
		}
		if rejected {
			return fmt.Errorf("%w: pkcs11: decrypt with key %q: authentication failed (another scope, tampered, or another key): %v", keys.ErrUnwrap, k.cfg.KeyLabel, err)
		}
		if err != nil {
			return fmt.Errorf("pkcs11: decrypt with key %q: %w", k.cfg.KeyLabel, err)
		}
		out = pt
		return nil
	})
	return out, err
}

func (k *KEK) createKey() error {
	tmpl := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
		p11.NewAttribute(p11.CKA_VALUE_LEN, 32),
		p11.NewAttribute(p11.CKA_LABEL, k.cfg.KeyLabel),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(p11.CKA_ENCRYPT, true),
		p11.NewAttribute(p11.CKA_DECRYPT, true),
		p11.NewAttribute(p11.CKA_WRAP, false),
		p11.NewAttribute(p11.CKA_UNWRAP, false),
		p11.NewAttribute(p11.CKA_SIGN, false),
		p11.NewAttribute(p11.CKA_VERIFY, false),
	}
	if _, err := k.ctx.GenerateKey(k.session, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_GEN, nil)}, tmpl); err != nil {
		return fmt.Errorf("pkcs11: generate key %q on token %q: %w", k.cfg.KeyLabel, k.cfg.TokenLabel, err)
	}
	return nil
}

// DestroyKey destroys the key on the token (C_DestroyObject): every keyset it wrapped, in the key directory and in its
// backups, can never be unwrapped again. An already missing key wraps keys.ErrKEKKeyMissing.
func (k *KEK) DestroyKey(ctx context.Context) error {
	return k.doWrite(ctx, func() error {
		key, err := k.findKey()
		if err != nil {
			return err
		}
		if err := k.ctx.DestroyObject(k.session, key); err != nil {
			return fmt.Errorf("pkcs11: destroy key %q on token %q: %w", k.cfg.KeyLabel, k.cfg.TokenLabel, err)
		}
		return nil
	})
}

// ckrAEADDecryptFailed is PKCS#11 v3.0's CKR_AEAD_DECRYPT_FAILED (not in the v2.40 constants of the Go binding).
const ckrAEADDecryptFailed = 0x35

// probe encrypts and decrypts a fixed block with key: nil means the token and key work. Called with the session held.
func (k *KEK) probe(key p11.ObjectHandle) error {
	iv := make([]byte, ivSize)
	if _, err := rand.Read(iv); err != nil {
		return err
	}
	ad, msg := []byte("blindfold pkcs11 probe"), []byte("probe")
	run := func(init func(p11.SessionHandle, []*p11.Mechanism, p11.ObjectHandle) error, op func(p11.SessionHandle, []byte) ([]byte, error), in []byte) ([]byte, error) {
		params := p11.NewGCMParams(iv, ad, tagBits)
		defer params.Free()
		if err := init(k.session, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_GCM, params)}, key); err != nil {
			return nil, err
		}
		return op(k.session, in)
	}
	ct, err := run(k.ctx.EncryptInit, k.ctx.Encrypt, msg)
	if err != nil {
		return err
	}
	pt, err := run(k.ctx.DecryptInit, k.ctx.Decrypt, ct)
	if err != nil {
		return err
	}
	if string(pt) != string(msg) {
		return errors.New("pkcs11: probe did not round-trip")
	}
	return nil
}

func isCode(err error, code uint) bool {
	var e p11.Error
	return errors.As(err, &e) && uint(e) == code
}

// isDeviceLost reports errors after which the module must be initialized again to reach the token.
func isDeviceLost(err error) bool {
	if errors.Is(err, errNoToken) || errors.Is(err, errTokenLost) {
		return true
	}
	for _, c := range []uint{p11.CKR_DEVICE_ERROR, p11.CKR_DEVICE_REMOVED, p11.CKR_TOKEN_NOT_PRESENT, p11.CKR_SLOT_ID_INVALID,
		p11.CKR_CRYPTOKI_NOT_INITIALIZED} {
		if isCode(err, c) {
			return true
		}
	}
	return false
}

// isSessionError reports errors after which the session is no longer usable.
func isSessionError(err error) bool {
	for _, c := range []uint{p11.CKR_SESSION_HANDLE_INVALID, p11.CKR_SESSION_CLOSED, p11.CKR_DEVICE_REMOVED, p11.CKR_TOKEN_NOT_PRESENT,
		p11.CKR_USER_NOT_LOGGED_IN, p11.CKR_DEVICE_ERROR, p11.CKR_CRYPTOKI_NOT_INITIALIZED} {
		if isCode(err, c) {
			return true
		}
	}
	return false
}
