package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/testenv"
)

func testFlagSet() (*pflag.FlagSet, *string, *[]string, *bool, *int) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	up := fs.String("upstream", "", "")
	ns := fs.StringSlice("allow-namespace", nil, "")
	tlsOn := fs.Bool("upstream-tls", false, "")
	n := fs.Int("compress-threshold", 0, "")
	fs.String("config", "", "")
	return fs, up, ns, tlsOn, n
}

func TestBindEnvAndConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "upstream: from-file:7233\nallow-namespace:\n  - a\n  - b\nupstream-tls: true\ncompress-threshold: 1024\n")

	t.Run("file", func(t *testing.T) {
		fs, up, ns, tlsOn, n := testFlagSet()
		if err := bindEnvAndConfig(fs, good); err != nil {
			t.Fatal(err)
		}
		if *up != "from-file:7233" || strings.Join(*ns, ",") != "a,b" || !*tlsOn || *n != 1024 {
			t.Fatalf("got %q %q %v %d", *up, *ns, *tlsOn, *n)
		}
	})
	t.Run("env over file, flag over env", func(t *testing.T) {
		t.Setenv("BLINDFOLD_UPSTREAM", "from-env:7233")
		t.Setenv("BLINDFOLD_ALLOW_NAMESPACE", "x,y")
		t.Setenv("BLINDFOLD_COMPRESS_THRESHOLD", "7")
		fs, up, ns, _, n := testFlagSet()
		if err := fs.Parse([]string{"--compress-threshold", "9"}); err != nil {
			t.Fatal(err)
		}
		if err := bindEnvAndConfig(fs, good); err != nil {
			t.Fatal(err)
		}
		if *up != "from-env:7233" || strings.Join(*ns, ",") != "x,y" || *n != 9 {
			t.Fatalf("got %q %q %d", *up, *ns, *n)
		}
	})
	for name, tc := range map[string]struct{ file, want string }{
		"unknown key":      {"upstream: x\nupstrem-tls: true\n", `line 2: unknown key "upstrem-tls"`},
		"config in config": {"config: other.yaml\n", `unknown key "config"`},
		"not a mapping":    {"- upstream\n", "want a mapping"},
		"list for scalar":  {"upstream: [a, b]\n", "line 1: upstream: want a single string value"},
		"bad int":          {"compress-threshold: lots\n", "line 1: invalid value for compress-threshold"},
		"nested list":      {"allow-namespace: [[a]]\n", "want a list of plain values"},
		"repeated key":     {"upstream: a\nupstream: b\n", "upstream"},
		"bad yaml":         {"upstream: [\n", "config"},
	} {
		t.Run(name, func(t *testing.T) {
			fs, _, _, _, _ := testFlagSet()
			err := bindEnvAndConfig(fs, write(strings.ReplaceAll(name, " ", "-")+".yaml", tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to mention %q", err, tc.want)
			}
		})
	}
	t.Run("bad env value is not echoed", func(t *testing.T) {
		t.Setenv("BLINDFOLD_COMPRESS_THRESHOLD", "s3cr3t-looking")
		fs, _, _, _, _ := testFlagSet()
		err := bindEnvAndConfig(fs, "")
		if err == nil || strings.Contains(err.Error(), "s3cr3t") || !strings.Contains(err.Error(), "BLINDFOLD_COMPRESS_THRESHOLD") {
			t.Fatalf("error %v", err)
		}
	})
	if err := bindEnvAndConfig(pflag.NewFlagSet("t", pflag.ContinueOnError), filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("missing config file accepted")
	}
}

// TestProxyCommandRefuses checks the misconfigurations the command refuses before it serves anything.
func TestProxyCommandRefuses(t *testing.T) {
	keyDir := newKeyDir(t)
	t.Setenv("BLINDFOLD_METRICS_LISTEN", "")
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"no upstream":        {[]string{}, nil, "--upstream is required"},
		"plaintext on all":   {[]string{"--upstream", "127.0.0.1:1", "--listen", "0.0.0.0:0"}, nil, "refusing to serve plaintext"},
		"plaintext on empty": {[]string{"--upstream", "127.0.0.1:1", "--listen", ":0"}, nil, "refusing to serve plaintext"},
		"half tls":           {[]string{"--upstream", "127.0.0.1:1", "--tls-cert", "c.pem"}, nil, "--tls-cert and --tls-key"},
		"xds server and tls": {[]string{"--upstream", "127.0.0.1:1", "--xds-server", "--tls-cert", "c.pem", "--tls-key", "k.pem"}, nil, "--xds-server takes inbound TLS"},
		"client ca alone":    {[]string{"--upstream", "127.0.0.1:1", "--client-ca", "ca.pem"}, nil, "--client-ca needs"},
		"half upstream mtls": {[]string{"--upstream", "127.0.0.1:1", "--upstream-cert", "c.pem"}, nil, "--upstream-cert and --upstream-key"},
		"missing tls files":  {[]string{"--upstream", "127.0.0.1:1", "--tls-cert", "nope.pem", "--tls-key", "nope-key.pem"}, nil, "inbound tls"},
		"missing ca file":    {[]string{"--upstream", "127.0.0.1:1", "--upstream-ca", "nope.pem"}, nil, "--upstream-ca"},
		"no master key":      {[]string{"--upstream", "127.0.0.1:1", "--key-dir", t.TempDir()}, nil, "no master key"},
		"bad kek":            {[]string{"--upstream", "127.0.0.1:1", "--kek", "hsm"}, nil, "--kek"},
		"bad log format":     {[]string{"--upstream", "127.0.0.1:1", "--log-format", "xml"}, nil, "--log-format"},
		"api key without tls": {[]string{"--upstream", "127.0.0.1:1", "--key-dir", keyDir}, map[string]string{"BLINDFOLD_API_KEY": "sk-very-secret"},
			"needs upstream TLS"},
		"api key twice": {[]string{"--upstream", "127.0.0.1:1", "--api-key-file", "k"}, map[string]string{"BLINDFOLD_API_KEY": "sk-very-secret"}, "exclusive"},
	} {
		t.Run(name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			r := execute(newProxyCmd(), tc.args)
			var err error
			select {
			case err = <-r.done:
			case <-time.After(20 * time.Second):
				t.Fatalf("still running:\n%s", r.out.String())
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to mention %q\n%s", err, tc.want, r.out.String())
			}
			if strings.Contains(err.Error()+r.out.String(), "sk-very-secret") {
				t.Fatal("the API key appears in the output")
			}
		})
	}
}

// TestProxyCommandInsecureListen checks that --insecure-listen lets the proxy serve plaintext beyond loopback, and
// that the command logs a warning about it, starts and stops cleanly (the upstream is never dialled).
func TestProxyCommandInsecureListen(t *testing.T) {
	r, _, _ := startProxyCmd(t, []string{"--upstream", "127.0.0.1:1", "--key-dir", newKeyDir(t), "--listen", "0.0.0.0:0",
		"--insecure-listen", "--metrics-listen", "", "--api-key", "sk-cmdline-secret", "--upstream-tls"})
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	out := r.out.String()
	for _, want := range []string{"in plaintext, without client authentication (insecure listen)", "--api-key on the command line is visible"} {
		if !strings.Contains(out, want) {
			t.Errorf("no warning %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "sk-cmdline-secret") {
		t.Error("the API key appears in the log")
	}
}

// writeTestPKI writes a CA, a server certificate for 127.0.0.1 and a client certificate (PEM) into dir.
func writeTestPKI(t *testing.T, dir string) (ca, cert, key, clientCert, clientKey string) {
	t.Helper()
	pki := testenv.NewPKI(t)
	cert, key = pki.Server(t, "proxy").Write(t, dir, "server.pem", "server-key.pem")
	clientCert, clientKey = pki.Client(t, "worker", "").Write(t, dir, "client.pem", "client-key.pem")
	return pki.WriteCA(t, dir, "ca.pem"), cert, key, clientCert, clientKey
}

// TestProxyCommandMTLS serves the proxy with inbound mutual TLS on a non-loopback-capable address: a client without a
// certificate is refused, one with a certificate from --client-ca gets gRPC health.
func TestProxyCommandMTLS(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key, clientCert, clientKey := writeTestPKI(t, dir)
	r, addr, _ := startProxyCmd(t, []string{"--upstream", "127.0.0.1:1", "--key-dir", newKeyDir(t), "--listen", "0.0.0.0:0",
		"--tls-cert", cert, "--tls-key", key, "--client-ca", ca, "--metrics-listen", ""})
	_, port, _ := net.SplitHostPort(addr)
	target := net.JoinHostPort("127.0.0.1", port)
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(ca)
	pool.AppendCertsFromPEM(caPEM)

	check := func(cfg *tls.Config) error {
		conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	if err := check(&tls.Config{RootCAs: pool}); err == nil {
		t.Error("a client without a certificate was served")
	}
	pair, err := tls.LoadX509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := check(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}); err != nil {
		t.Errorf("a client with a certificate: %v", err)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}

// TestDecodedLimitFlags: the decoded-size limits reach the gateway config, with the codec's default, and are validated.
func TestDecodedLimitFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		args        []string
		perResponse int
		perRequest  int64
		wantErr     string
	}{
		{"defaults", nil, codec.DefaultMaxDecodedTotal, 0, ""},
		{"set", []string{"--max-decoded-bytes", "1048576", "--codec-max-decoded-bytes", "4096"}, 1 << 20, 4096, ""},
		{"zero", []string{"--max-decoded-bytes", "0"}, 0, 0, "--max-decoded-bytes must be positive"},
		{"negative endpoint", []string{"--codec-max-decoded-bytes", "-1"}, 0, 0, "--codec-max-decoded-bytes must not be negative"},
	} {
		p := proxyFlags{}
		args := append([]string{"--upstream", "127.0.0.1:7234", "--codec-listen", "127.0.0.1:0"}, tc.args...)
		if err := newProxyCmdFor(&p).ParseFlags(args); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		err := p.validate()
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: validate = %v, want %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: validate: %v", tc.name, err)
		}
		cfg, err := p.gatewayConfig(nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if cfg.MaxDecodedBytesPerResponse != tc.perResponse || cfg.CodecEndpoint.MaxDecodedBytesPerRequest != tc.perRequest {
			t.Errorf("%s: per response %d, per request %d; want %d, %d", tc.name, cfg.MaxDecodedBytesPerResponse,
				cfg.CodecEndpoint.MaxDecodedBytesPerRequest, tc.perResponse, tc.perRequest)
		}
	}
}
