package gateway

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/kmsdevproc"
	"github.com/blindfold-dev/blindfold/keys/awskms"
	"github.com/blindfold-dev/blindfold/keys/pkcs11"
)

func TestParseKEKKind(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in     string
		want   KEKKind
		remote bool
	}{
		{"", KEKLocal, false}, {"local", KEKLocal, false}, {"vault", KEKVault, true},
		{"awskms", KEKAWSKMS, true}, {"pkcs11", KEKPKCS11, true}, {"plugin", KEKPlugin, true},
	} {
		got, err := ParseKEKKind(tc.in)
		if err != nil || got != tc.want || got.Remote() != tc.remote {
			t.Errorf("ParseKEKKind(%q) = %q (remote %v), %v; want %q (remote %v)", tc.in, got, got.Remote(), err, tc.want, tc.remote)
		}
	}
	if _, err := ParseKEKKind("hsm"); err == nil || !strings.Contains(err.Error(), "awskms, pkcs11 or plugin") {
		t.Errorf("ParseKEKKind(hsm) = %v; want an error listing the providers", err)
	}
	if p := (KeysConfig{Dir: "x", KEK: KEKAWSKMS}).Plan(); p.BackgroundRefresh != DefaultBackgroundRefresh {
		t.Errorf("plan of an awskms gateway: %+v; want background refresh", p)
	}
}

// TestOpenKeysAWSKMS opens a gateway's keys wrapped by a real KMS implementation (local-kms) and seals a payload.
func TestOpenKeysAWSKMS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kmsdev")
	}
	t.Parallel()
	p := kmsdevproc.Start(t, kmsdevproc.Options{})
	key, err := p.CreateKey(context.Background(), "gateway")
	if err != nil {
		t.Fatal(err)
	}
	k, err := OpenKeys(context.Background(), KeysConfig{Dir: t.TempDir(), KEK: KEKAWSKMS, AutoCreate: true,
		AWSKMS: awskms.Config{KeyID: key, Endpoint: p.Endpoint(), Credentials: kmsdevproc.Credentials}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if k.AWSKMS == nil || k.KEK() != k.AWSKMS {
		t.Fatalf("keys: %+v; want the AWS KMS KEK", k)
	}
	if _, err := k.Manager.SealingKey(context.Background(), codec.Target{Namespace: "default"}); err != nil {
		t.Fatal(err)
	}
	if k.Manager.Stats().KEKCalls == 0 {
		t.Error("no KEK call to create a scope")
	}
}

func TestOpenKeysPKCS11Errors(t *testing.T) {
	t.Parallel()
	_, err := OpenKeys(context.Background(), KeysConfig{Dir: t.TempDir(), KEK: KEKPKCS11,
		PKCS11: pkcs11.Config{Module: "/nonexistent/libpkcs11.so", TokenLabel: "t", KeyLabel: "k", PIN: "1"}}, nil)
	if err == nil || !(strings.Contains(err.Error(), "cannot load module") || errors.Is(err, pkcs11.ErrNotCompiled)) {
		t.Fatalf("OpenKeys with a missing module: %v", err)
	}
}
