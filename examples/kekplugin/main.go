// Command kekplugin is an EXAMPLE key-encryption-key plugin for Blindfold (--kek plugin): it wraps scope keysets with
// AES-256-GCM under a local 32-byte key, one subkey per scope derived with HKDF-SHA256. It shows how little a plugin
// needs: a Backend with Wrap and Unwrap, handed to kekplugin.Serve. A real plugin calls a KMS there instead (GCP KMS,
// Azure Key Vault, an in-house key service); keeping the key in a file, as this one does, protects no better than
// Blindfold's own local master key.
//
//	go run ./examples/kekplugin -new-key /etc/blindfold/example-kek.key
//	go run ./examples/kekplugin -listen /run/blindfold/kek.sock -key-file /etc/blindfold/example-kek.key
//	blindfold proxy --kek plugin --kek-plugin-address unix:///run/blindfold/kek.sock ...
//
// The key comes from -key-file, else from $KEKPLUGIN_EXAMPLE_KEY (standard base64 of 32 bytes). The plugin prints
// "kekplugin: serving on ADDRESS" once it accepts calls, and stops on SIGINT or SIGTERM.
package main

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/blindfold-dev/blindfold/keys/kekplugin"
)

// keyEnv names the environment variable holding the key when -key-file is not given.
const keyEnv = "KEKPLUGIN_EXAMPLE_KEY"

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kekplugin:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("kekplugin", flag.ContinueOnError)
	listen := fs.String("listen", "", "unix socket path (recommended) or loopback host:port to serve on (required)")
	keyFile := fs.String("key-file", "", "file with the 32-byte key, standard base64 (default $"+keyEnv+")")
	newKey := fs.String("new-key", "", "write a new random key to this file (mode 0600) and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *newKey != "" {
		return writeNewKey(*newKey)
	}
	if *listen == "" {
		return errors.New("-listen is required (a unix socket path, or 127.0.0.1:PORT)")
	}
	key, err := loadKey(*keyFile)
	if err != nil {
		return err
	}
	b := &backend{key: key}

	var lis net.Listener
	if strings.HasPrefix(*listen, "/") {
		lis, err = kekplugin.ListenUnix(*listen)
	} else {
		lis, err = net.Listen("tcp", *listen)
	}
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(out, "kekplugin: serving on %s\n", lis.Addr())
	return kekplugin.Serve(ctx, lis, b, kekplugin.WithInfo("example-aes-gcm", "1"))
}

// backend wraps with AES-256-GCM under a per-scope key derived from the plugin's key. The ciphertext is nonce||sealed,
// and the associated data Blindfold sends (which names the scope) is the GCM associated data, so a keyset wrapped for
// one scope never unwraps for another even without the per-scope key.
type backend struct {
	key []byte
}

func (b *backend) aead(scope string) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, b.key, nil, "blindfold example kekplugin v1 scope="+scope, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func (b *backend) Wrap(_ context.Context, scope string, plaintext, ad []byte) ([]byte, error) {
	a, err := b.aead(scope)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, a.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return a.Seal(nonce, nonce, plaintext, ad), nil
}

func (b *backend) Unwrap(_ context.Context, scope string, ciphertext, ad []byte) ([]byte, error) {
	a, err := b.aead(scope)
	if err != nil {
		return nil, err
	}
	if len(ciphertext) < a.NonceSize()+a.Overhead() {
		return nil, fmt.Errorf("%w: ciphertext too short", kekplugin.ErrRejected)
	}
	pt, err := a.Open(nil, ciphertext[:a.NonceSize()], ciphertext[a.NonceSize():], ad)
	if err != nil {
		// Authentication failed: the answer is "no", not "could not decide".
		return nil, fmt.Errorf("%w: %v", kekplugin.ErrRejected, err)
	}
	return pt, nil
}

func loadKey(path string) ([]byte, error) {
	var text string
	if path != "" {
		fi, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("key file %s has mode %04o; run: chmod 600 %s", path, fi.Mode().Perm(), path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		text = string(b)
	} else if v, ok := os.LookupEnv(keyEnv); ok {
		text = v
	} else {
		return nil, fmt.Errorf("no key: give -key-file or set $%s (create one with -new-key FILE)", keyEnv)
	}
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
	if err != nil || len(k) != 32 {
		return nil, errors.New("the key must be 32 bytes in standard base64")
	}
	return k, nil
}

func writeNewKey(path string) error {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(base64.StdEncoding.EncodeToString(k) + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
