package awskms_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/kmsdevproc"
	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/keys/awskms"
)

func TestMain(m *testing.M) {
	os.Unsetenv(keys.MasterKeyEnv)
	os.Unsetenv(keys.KeyDirEnv)
	os.Exit(m.Run())
}

// fixture is one test's own kmsdev (local-kms) with one key, and a KEK for it.
type fixture struct {
	kms *kmsdevproc.Proc
	key string // ARN
	kek *awskms.KEK
}

func setup(t *testing.T) fixture {
	t.Helper()
	if testing.Short() {
		t.Skip("starts kmsdev; skipped with -short")
	}
	p := kmsdevproc.Start(t, kmsdevproc.Options{})
	key, err := p.CreateKey(context.Background(), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	return fixture{kms: p, key: key, kek: newKEK(t, p, key)}
}

func newKEK(t *testing.T, p *kmsdevproc.Proc, key string) *awskms.KEK {
	t.Helper()
	k, err := awskms.New(context.Background(), awskms.Config{
		KeyID: key, Endpoint: p.Endpoint(), Credentials: kmsdevproc.Credentials, MaxAttempts: 1, Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var created = map[string]string{"1": "2026-01-02T03:04:05Z"}

func TestWrapUnwrap(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	ad := keys.KeysetAD("payments", created)
	ct, err := f.kek.EncryptWithContext(ctx, []byte("a keyset"), ad)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(ct), "a keyset") {
		t.Fatal("ciphertext holds the plaintext")
	}
	pt, err := f.kek.DecryptWithContext(ctx, ct, ad)
	if err != nil || string(pt) != "a keyset" {
		t.Fatalf("decrypt = %q, %v", pt, err)
	}
	if f.kek.Region() != f.kms.Region() {
		t.Errorf("region %q, want %q from the key ARN", f.kek.Region(), f.kms.Region())
	}
	info, err := f.kek.Check(ctx)
	if err != nil || info.ARN != f.key {
		t.Errorf("Check = %+v, %v", info, err)
	}
}

// TestRejected: what KMS refuses to unwrap wraps keys.ErrUnwrap and says why, without any ciphertext bytes.
func TestRejected(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	ad := keys.KeysetAD("payments", created)
	ct, err := f.kek.EncryptWithContext(ctx, []byte("a keyset"), ad)
	if err != nil {
		t.Fatal(err)
	}
	other, err := f.kms.CreateKey(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte(nil), ct...)
	tampered[len(tampered)-1] ^= 1
	for _, tc := range []struct {
		name string
		kek  *awskms.KEK
		ct   []byte
		ad   []byte
	}{
		{"other scope", f.kek, ct, keys.KeysetAD("hr", created)},
		{"other creation times", f.kek, ct, keys.KeysetAD("payments", map[string]string{"1": "2027-01-01T00:00:00Z"})},
		{"tampered", f.kek, tampered, ad},
		{"other kms key", newKEK(t, f.kms, other), ct, ad},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.kek.DecryptWithContext(ctx, tc.ct, tc.ad)
			if !errors.Is(err, keys.ErrUnwrap) || errors.Is(err, keys.ErrKEKKeyMissing) {
				t.Fatalf("decrypt: %v; want keys.ErrUnwrap", err)
			}
			if !strings.Contains(err.Error(), "aws kms decrypt") {
				t.Errorf("error %q does not name the operation", err)
			}
		})
	}
	if _, err := f.kek.EncryptWithContext(ctx, []byte("x"), []byte("not a keyset")); err == nil {
		t.Error("encrypt with associated data that names no scope succeeded")
	}
}

// TestKMSDown: an unreachable KMS is not a rejection: the Manager must keep its cached keysets and retry later.
func TestKMSDown(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	ad := keys.KeysetAD("payments", created)
	ct, err := f.kek.EncryptWithContext(ctx, []byte("a keyset"), ad)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.kms.Stop(); err != nil {
		t.Fatal(err)
	}
	_, err = f.kek.DecryptWithContext(ctx, ct, ad)
	if err == nil || errors.Is(err, keys.ErrUnwrap) || errors.Is(err, keys.ErrKEKKeyMissing) {
		t.Fatalf("decrypt with KMS down: %v; want an error that is neither ErrUnwrap nor ErrKEKKeyMissing", err)
	}
	t.Logf("KMS down: %v", err)
	if err := f.kms.Restart(); err != nil {
		t.Fatal(err)
	}
	if pt, err := f.kek.DecryptWithContext(ctx, ct, ad); err != nil || string(pt) != "a keyset" {
		t.Fatalf("decrypt after restart (keys kept): %q, %v", pt, err)
	}
}

// TestContextHonoured: a hung KMS (the process stopped with SIGSTOP) returns when ctx ends, with ctx's error.
func TestContextHonoured(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ad := keys.KeysetAD("payments", created)
	ct, err := f.kek.EncryptWithContext(context.Background(), []byte("a keyset"), ad)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.kms.Pause(); err != nil {
		t.Fatal(err)
	}
	defer f.kms.Resume()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, err = f.kek.DecryptWithContext(ctx, ct, ad)
	took := time.Since(began)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, keys.ErrUnwrap) {
		t.Fatalf("decrypt against a hung KMS: %v; want context.DeadlineExceeded", err)
	}
	if took > 3*time.Second {
		t.Errorf("decrypt returned %s after its deadline of 200ms", took)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if _, err := f.kek.EncryptWithContext(cctx, []byte("x"), ad); !errors.Is(err, context.Canceled) {
		t.Errorf("encrypt with a cancelled ctx: %v; want context.Canceled", err)
	}
}

// TestKeyDisabled: a disabled KMS key is a revocation that can be undone: not a rejection, not a shred. A Manager keeps
// serving its cache within the TTL, fails closed after it, and recovers when the key is enabled again.
func TestKeyDisabled(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	clock := testenv.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	m, err := keys.NewManager(keys.NewDirStore(t.TempDir()), f.kek, keys.WithClock(clock.Now), keys.WithCacheTTL(time.Minute),
		keys.WithMinRefreshInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	k, err := m.SealingKey(ctx, codec.Target{Namespace: "payments"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.kms.Client().DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(f.key)}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(45 * time.Second) // past RefreshAfter: the refresh fails, the cached keyset serves
	if _, err := m.OpeningKey(ctx, "payments", k.ID); err != nil {
		t.Fatalf("within the TTL with the key disabled: %v", err)
	}
	clock.Advance(time.Minute)
	_, err = m.OpeningKey(ctx, "payments", k.ID)
	if !errors.Is(err, keys.ErrUnavailable) || errors.Is(err, keys.ErrUnwrap) || errors.Is(err, codec.ErrKeyDestroyed) ||
		!strings.Contains(err.Error(), "disabled") {
		t.Fatalf("past the TTL with the key disabled: %v; want ErrUnavailable saying the key is disabled", err)
	}
	if _, err := f.kms.Client().EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(f.key)}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	if _, err := m.OpeningKey(ctx, "payments", k.ID); err != nil {
		t.Fatalf("after enable-key: %v", err)
	}
}

// TestKeyScheduledForDeletion is the KMS shred: scheduling the key's deletion makes every keyset it wrapped, copies in
// backups included, count as shredded (codec.ErrKeyDestroyed, naming the KMS key), while cancelling the deletion within the
// waiting period (and enabling the key) brings the data back.
func TestKeyScheduledForDeletion(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	dir := t.TempDir()
	m, err := keys.NewManager(keys.NewDirStore(dir), f.kek)
	if err != nil {
		t.Fatal(err)
	}
	k, err := m.SealingKey(ctx, codec.Target{Namespace: "payments"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.kms.Client().ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(f.key), PendingWindowInDays: aws.Int32(7)}); err != nil {
		t.Fatal(err)
	}
	// A fresh Manager over the same directory: what a restarted replica, or one with the directory restored from a backup, sees.
	m2, err := keys.NewManager(keys.NewDirStore(dir), f.kek)
	if err != nil {
		t.Fatal(err)
	}
	_, err = m2.OpeningKey(ctx, "payments", k.ID)
	if !errors.Is(err, codec.ErrKeyDestroyed) || !strings.Contains(err.Error(), "pending deletion") || !strings.Contains(err.Error(), f.key) {
		t.Fatalf("opening key with the KMS key pending deletion: %v; want codec.ErrKeyDestroyed naming the KMS key", err)
	}
	if _, err := m2.SealingKey(ctx, codec.Target{Namespace: "payments"}); !errors.Is(err, codec.ErrKeyDestroyed) {
		t.Fatalf("sealing key with the KMS key pending deletion: %v; want codec.ErrKeyDestroyed", err)
	}
	if _, err := f.kek.Check(ctx); !errors.Is(err, keys.ErrKEKKeyMissing) {
		t.Errorf("Check with the key pending deletion: %v; want keys.ErrKEKKeyMissing", err)
	}
	if _, err := f.kms.Client().CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: aws.String(f.key)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.kms.Client().EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(f.key)}); err != nil {
		t.Fatal(err)
	}
	m3, err := keys.NewManager(keys.NewDirStore(dir), f.kek)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m3.OpeningKey(ctx, "payments", k.ID); err != nil {
		t.Fatalf("after cancel-key-deletion and enable-key: %v", err)
	}
}

// TestDeletedKey: a key that does not exist (deleted after its waiting period, or never in this account and region) wraps
// keys.ErrKEKKeyMissing.
func TestDeletedKey(t *testing.T) {
	t.Parallel()
	f := setup(t)
	missing := strings.Replace(f.key, f.key[strings.LastIndex(f.key, "/")+1:], "00000000-0000-0000-0000-000000000000", 1)
	k := newKEK(t, f.kms, missing)
	_, err := k.DecryptWithContext(context.Background(), []byte("ciphertext"), keys.KeysetAD("payments", created))
	if !errors.Is(err, keys.ErrKEKKeyMissing) {
		t.Fatalf("decrypt with a missing key: %v; want keys.ErrKEKKeyMissing", err)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	for _, tc := range []struct {
		name string
		cfg  awskms.Config
		want string
	}{
		{"no key", awskms.Config{}, "key id is required"},
		{"no region", awskms.Config{KeyID: "alias/blindfold"}, "no region"},
	} {
		if _, err := awskms.New(context.Background(), tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.name, err, tc.want)
		}
	}
	k, err := awskms.New(context.Background(), awskms.Config{KeyID: "arn:aws:kms:eu-central-1:111122223333:key/abc"})
	if err != nil || k.Region() != "eu-central-1" {
		t.Errorf("region from the key ARN: %v, %v", k, err)
	}
}

// TestRewrapToNewKey is the KMS key rotation: a Manager's keysets move to a new KMS key with ReEncrypt (inside KMS), after
// which the old key can be disabled; a copy still wrapped under the old key then no longer opens.
func TestRewrapToNewKey(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	dir := t.TempDir()
	m, err := keys.NewManager(keys.NewDirStore(dir), f.kek)
	if err != nil {
		t.Fatal(err)
	}
	k, err := m.SealingKey(ctx, codec.Target{Namespace: "payments"})
	if err != nil {
		t.Fatal(err)
	}
	newKey, err := f.kms.CreateKey(ctx, "rotated")
	if err != nil {
		t.Fatal(err)
	}
	m2, err := keys.NewManager(keys.NewDirStore(dir), newKEK(t, f.kms, newKey))
	if err != nil {
		t.Fatal(err)
	}
	changed, err := m2.RewrapAll(ctx)
	if err != nil || len(changed) != 1 || changed[0] != "payments" {
		t.Fatalf("RewrapAll = %v, %v; want [payments]", changed, err)
	}
	if _, err := f.kms.Client().DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(f.key)}); err != nil {
		t.Fatal(err)
	}
	if _, err := m2.OpeningKey(ctx, "payments", k.ID); err != nil {
		t.Fatalf("opening key under the new KMS key with the old one disabled: %v", err)
	}
}
