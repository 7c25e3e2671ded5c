package keyse2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/internal/kmsdevproc"
	"github.com/blindfold-dev/blindfold/internal/vaultdevproc"
	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/keys/awskms"
	"github.com/blindfold-dev/blindfold/keys/kekplugin"
	"github.com/blindfold-dev/blindfold/keys/pkcs11"
	"github.com/blindfold-dev/blindfold/keys/vault"
)

// provider is one KEK the suite runs every workflow-level key test against. setup starts what the KEK needs for one test
// (a vaultdev or kmsdev of the test's own; a key of its own on the package's SoftHSM token) and returns its rig.
type provider struct {
	name string
	// skip, when set, says why the provider is not run (its rig is not there yet, or the machine lacks it).
	skip  func() string
	setup func(t testing.TB) *kekRig
	// outage, if set, is the rig TestOutage uses instead of setup's (a KEK on a token of its own, which it takes away).
	outage func(t testing.TB) *kekRig
}

// providers are the KEKs of the suite. Every test runs once per provider, as a subtest named after it.
var providers = []provider{
	{name: "local", setup: localRig},
	{name: "vault", setup: vaultRig},
	{name: "awskms", setup: awsKMSRig},
	{name: "pkcs11", setup: pkcs11Rig, outage: pkcs11OutageRig, skip: func() string { return hsmSkip }},
	// The out-of-process KEK plugin (keys/kekplugin, --kek plugin): the example plugin as a real process. Its backend
	// is a local key file, so like the local master key it offers no shred against backups.
	{name: "plugin", setup: pluginRig},
}

// kekRig is one test's KEK as the tests drive it.
type kekRig struct {
	// keys is the key configuration of a gateway whose keysets live in dir — what `blindfold proxy --kek … --create-keys`
	// builds. tune, if set, adjusts the cache timing.
	keys func(dir string, tune func(*gateway.KeysConfig)) gateway.KeysConfig
	// backup copies what a backup of the key directory dir holds into a new directory and returns it.
	backup func(t *testing.T, dir string) string

	// Outage: take the KEK down and bring it back (nil when it cannot be taken down apart from the process: the local
	// master key). Vault, KMS and the plugin are processes the test kills; the HSM is a SoftHSM2 token whose storage the
	// test takes away (softhsmtest.Token).
	stop, restart func() error
	running       func() bool
	// downText is in the fail-closed status of a call that needed the KEK while it was down (with downAddr, if set).
	downText, downAddr string

	// Shred. afterShred runs after Manager.Shred: it checks that the KEK key is gone (Vault: Shred deleted the scope's
	// Transit key) or destroys it (KMS: schedule the key's deletion; HSM: destroy the token key), which is the shred of
	// those KEKs. nil for the local master key, which no shred can take out of a backup.
	afterShred func(t *testing.T, ctx context.Context, px *testProxy)
	// destroyedText is in the refusal of a restored backup after afterShred; backupOpens is true when a restored backup
	// still opens (the local master key: a backup of the key directory holds it).
	destroyedText string
	backupOpens   bool

	// rotateKEK, if set, rotates the KEK mid-run on the running proxy px (Vault: a new Transit key version). retireKEK, if
	// set, completes a KEK rotation: it moves the stored keysets of dir to the newest KEK inside the KEK, retires the old
	// one, and returns the key configuration to start a fresh proxy with, and what the refusal of a backup taken before
	// (still under the retired KEK) must contain.
	rotateKEK func(t *testing.T, ctx context.Context, px *testProxy)
	retireKEK func(t *testing.T, ctx context.Context, px *testProxy, dir string) (fresh gateway.KeysConfig, backup string, refusal []string)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func localRig(testing.TB) *kekRig {
	return &kekRig{
		keys: func(dir string, tune func(*gateway.KeysConfig)) gateway.KeysConfig {
			kc := gateway.KeysConfig{Dir: dir, KEK: gateway.KEKLocal, AutoCreate: true, CreateMasterKey: true}
			if tune != nil {
				tune(&kc)
			}
			return kc
		},
		// A backup of a local key directory holds the master key too: that is why the local KEK is for development.
		backup: func(t *testing.T, dir string) string {
			out := copyKeyset(t, dir, scope)
			copyFile(t, filepath.Join(dir, keys.MasterKeyFile), filepath.Join(out, keys.MasterKeyFile))
			return out
		},
		backupOpens: true,
	}
}

func vaultRig(t testing.TB) *kekRig {
	p := vaultdevproc.Start(t, vaultdevproc.Options{StorageDir: t.TempDir()}) // file storage: a Restart keeps the Transit keys
	prefix := unique("vault") + "-"
	r := &kekRig{
		keys: func(dir string, tune func(*gateway.KeysConfig)) gateway.KeysConfig {
			kc := gateway.KeysConfig{
				Dir: dir, KEK: gateway.KEKVault, AutoCreate: true,
				Vault: vault.Config{
					Address: p.Addr(), Mount: p.TransitMount(), KeyPrefix: prefix,
					Auth:       vault.Auth{Method: vault.AuthToken, Token: p.Token()},
					CreateKeys: true, Timeout: 5 * time.Second, Logger: quietLogger,
				},
			}
			if tune != nil {
				tune(&kc)
			}
			return kc
		},
		backup:   func(t *testing.T, dir string) string { return copyKeyset(t, dir, scope) },
		stop:     p.Stop,
		restart:  p.Restart,
		running:  p.Running,
		downText: "vault transit", downAddr: p.Addr(),
		destroyedText: "vault transit",
	}
	r.afterShred = func(t *testing.T, ctx context.Context, px *testProxy) {
		if _, err := px.gk.Vault.TransitKey(ctx, scope); !errors.Is(err, keys.ErrKEKKeyMissing) {
			t.Fatalf("Transit key after shred: %v, want it deleted", err)
		}
	}
	r.rotateKEK = func(t *testing.T, ctx context.Context, px *testProxy) {
		if v, err := px.gk.Vault.RotateScopeKey(ctx, scope); err != nil || v != 2 {
			t.Fatalf("RotateScopeKey = %d, %v; want version 2", v, err)
		}
	}
	r.retireKEK = func(t *testing.T, ctx context.Context, px *testProxy, dir string) (gateway.KeysConfig, string, []string) {
		kek := px.gk.Vault
		if v, err := kek.RotateScopeKey(ctx, scope); err != nil || v != 3 {
			t.Fatalf("RotateScopeKey = %d, %v; want version 3", v, err)
		}
		backup := copyKeyset(t, dir, scope) // wrapped under v2, as a backup taken now would be
		changed, err := px.km.RewrapAll(ctx)
		if err != nil || len(changed) != 1 || changed[0] != scope {
			t.Fatalf("RewrapAll = %v, %v; want [%s]", changed, err, scope)
		}
		if err := kek.SetMinDecryptionVersion(ctx, scope, 3); err != nil {
			t.Fatal(err)
		}
		info, err := kek.TransitKey(ctx, scope)
		if err != nil || info.LatestVersion != 3 || info.MinDecryptionVersion != 3 {
			t.Fatalf("Transit key after rewrap: %+v, %v; want latest 3, min_decryption_version 3", info, err)
		}
		return r.keys(dir, nil), backup, []string{keys.ErrUnwrap.Error(), kek.KeyName(scope), "too old"}
	}
	return r
}

func awsKMSRig(t testing.TB) *kekRig {
	p := kmsdevproc.Start(t, kmsdevproc.Options{})
	key, err := p.CreateKey(context.Background(), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	cfg := func(key string) func(dir string, tune func(*gateway.KeysConfig)) gateway.KeysConfig {
		return func(dir string, tune func(*gateway.KeysConfig)) gateway.KeysConfig {
			kc := gateway.KeysConfig{Dir: dir, KEK: gateway.KEKAWSKMS, AutoCreate: true,
				AWSKMS: awskms.Config{KeyID: key, Endpoint: p.Endpoint(), Credentials: kmsdevproc.Credentials, Timeout: 5 * time.Second}}
			if tune != nil {
				tune(&kc)
			}
			return kc
		}
	}
	r := &kekRig{
		keys:     cfg(key),
		backup:   func(t *testing.T, dir string) string { return copyKeyset(t, dir, scope) },
		stop:     p.Stop,
		restart:  p.Restart,
		running:  p.Running,
		downText: "aws kms", downAddr: key,
		destroyedText: key,
	}
	r.afterShred = func(t *testing.T, ctx context.Context, _ *testProxy) {
		// The KMS shred: the key's deletion is scheduled (7 days is KMS's shortest waiting period; local-kms, like KMS,
		// refuses every use of the key from now on).
		if _, err := p.Client().ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(key), PendingWindowInDays: aws.Int32(7)}); err != nil {
			t.Fatal(err)
		}
	}
	r.retireKEK = func(t *testing.T, ctx context.Context, px *testProxy, dir string) (gateway.KeysConfig, string, []string) {
		// Moving to another KMS key: create it, rewrap the stored keysets to it inside KMS (ReEncrypt), disable the old key.
		newKey, err := p.CreateKey(ctx, t.Name()+"-rotated")
		if err != nil {
			t.Fatal(err)
		}
		backup := copyKeyset(t, dir, scope)
		kek, err := awskms.New(ctx, cfg(newKey)(dir, nil).AWSKMS)
		if err != nil {
			t.Fatal(err)
		}
		m, err := keys.NewManager(keys.NewDirStore(dir), kek)
		if err != nil {
			t.Fatal(err)
		}
		changed, err := m.RewrapAll(ctx)
		if err != nil || len(changed) != 1 || changed[0] != scope {
			t.Fatalf("RewrapAll to the new KMS key = %v, %v; want [%s]", changed, err, scope)
		}
		if _, err := p.Client().DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(key)}); err != nil {
			t.Fatal(err)
		}
		// AWS KMS answers IncorrectKeyException for a ciphertext of another key, local-kms InvalidCiphertextException: both
		// are a rejection (ErrUnwrap) by the new key.
		return cfg(newKey)(dir, nil), backup, []string{keys.ErrUnwrap.Error(), "aws kms decrypt with key " + newKey}
	}
	return r
}

// hsmSkip says why the PKCS#11 provider does not run (set by TestMain).
var hsmSkip string

func pkcs11Rig(t testing.TB) *kekRig { return pkcs11RigOn(t, hsmToken) }

// pkcs11OutageRig is a KEK on the outage token: stop takes the token's storage away (its directory out of SoftHSM2's
// token directory), restart gives it back. The real SoftHSM2 then lists no objects on the token and fails
// C_GetTokenInfo, until the module is initialized again with the directory back, which keys/pkcs11 does by itself.
func pkcs11OutageRig(t testing.TB) *kekRig {
	r := pkcs11RigOn(t, hsmOutage.Label)
	r.stop, r.restart, r.running = hsmOutage.Remove, hsmOutage.Restore, hsmOutage.Present
	r.downText, r.downAddr = `token "`+hsmOutage.Label+`"`, hsm.Module
	t.Cleanup(func() {
		if !hsmOutage.Present() {
			_ = hsmOutage.Restore()
		}
	})
	return r
}

func pkcs11RigOn(t testing.TB, token string) *kekRig {
	cfg := pkcs11.Config{Module: hsm.Module, TokenLabel: token, PIN: hsmPIN, KeyLabel: unique("hsm")}
	k, err := pkcs11.New(context.Background(), pkcs11.Config{Module: cfg.Module, TokenLabel: cfg.TokenLabel, PIN: cfg.PIN,
		KeyLabel: cfg.KeyLabel, CreateKey: true})
	if errors.Is(err, pkcs11.ErrNotCompiled) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return &kekRig{
		keys: func(dir string, tune func(*gateway.KeysConfig)) gateway.KeysConfig {
			kc := gateway.KeysConfig{Dir: dir, KEK: gateway.KEKPKCS11, AutoCreate: true, PKCS11: cfg}
			if tune != nil {
				tune(&kc)
			}
			return kc
		},
		backup: func(t *testing.T, dir string) string { return copyKeyset(t, dir, scope) },
		afterShred: func(t *testing.T, ctx context.Context, _ *testProxy) {
			if err := k.DestroyKey(ctx); err != nil {
				t.Fatal(err)
			}
		},
		destroyedText: cfg.KeyLabel,
	}
}

// forEachKEK runs test once per provider as a subtest; parallel subtests share the package's one Temporal server.
func forEachKEK(t *testing.T, parallel bool, test func(t *testing.T, p provider)) {
	for _, p := range providers {
		t.Run(p.name, func(t *testing.T) {
			if p.skip != nil {
				if why := p.skip(); why != "" {
					t.Skip(why)
				}
			}
			if parallel {
				t.Parallel()
			}
			test(t, p)
		})
	}
}

// EnvKEKPluginExample names the example KEK plugin binary (examples/kekplugin); unset, the suite builds it.
const EnvKEKPluginExample = "BLINDFOLD_KEKPLUGIN_EXAMPLE"

var (
	pluginBuild     sync.Once
	pluginBinary    string
	pluginBuildFail error
)

func examplePlugin(t testing.TB) string {
	t.Helper()
	pluginBuild.Do(func() {
		if p := os.Getenv(EnvKEKPluginExample); p != "" {
			pluginBinary = p
			return
		}
		_, self, _, _ := runtime.Caller(0)
		dir, err := os.MkdirTemp("", "keyse2e-kekplugin")
		if err != nil {
			pluginBuildFail = err
			return
		}
		pluginBinary = filepath.Join(dir, "kekplugin")
		cmd := exec.Command("go", "build", "-o", pluginBinary, "./examples/kekplugin")
		cmd.Dir = filepath.Join(filepath.Dir(self), "..", "..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			pluginBuildFail = fmt.Errorf("go build ./examples/kekplugin: %v\n%s", err, out)
		}
	})
	if pluginBuildFail != nil {
		t.Fatal(pluginBuildFail)
	}
	return pluginBinary
}

// pluginProc runs the example KEK plugin on one socket with one key, and can kill and restart it.
type pluginProc struct {
	t           testing.TB
	bin, socket string
	key         string
	mu          sync.Mutex
	cmd         *exec.Cmd
	done        chan struct{}
}

func (p *pluginProc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := exec.Command(p.bin, "-listen", p.socket)
	cmd.Env = append(os.Environ(), "KEKPLUGIN_EXAMPLE_KEY="+p.key)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ready <- sc.Scan() && strings.HasPrefix(sc.Text(), "kekplugin: serving on ")
		for sc.Scan() {
		}
		_ = cmd.Wait()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	select {
	case ok := <-ready:
		if !ok {
			return errors.New("example kek plugin did not start")
		}
	case <-time.After(30 * time.Second):
		return errors.New("example kek plugin: no ready line within 30s")
	}
	return nil
}

// stop kills the plugin (SIGKILL: it dies mid-run) and waits until it is gone.
func (p *pluginProc) stop() error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Kill()
	<-done
	return nil
}

func (p *pluginProc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func pluginRig(t testing.TB) *kekRig {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "kekplugin") // short: a unix socket path has a length limit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	p := &pluginProc{t: t, bin: examplePlugin(t), socket: filepath.Join(dir, "kek.sock"), key: base64.StdEncoding.EncodeToString(key)}
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.stop() })
	return &kekRig{
		keys: func(kdir string, tune func(*gateway.KeysConfig)) gateway.KeysConfig {
			kc := gateway.KeysConfig{Dir: kdir, KEK: gateway.KEKPlugin, AutoCreate: true,
				Plugin: kekplugin.Config{Address: p.socket, Timeout: 2 * time.Second}}
			if tune != nil {
				tune(&kc)
			}
			return kc
		},
		backup:   func(t *testing.T, dir string) string { return copyKeyset(t, dir, scope) },
		stop:     p.stop,
		restart:  p.start,
		running:  p.running,
		downText: "kek plugin", downAddr: p.socket,
		// The example's backend is a key file that outlives a shred: a restored backup still opens (like local).
		backupOpens: true,
	}
}
