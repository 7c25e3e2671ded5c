package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a throwaway certificate authority for tests: ECDSA P-256, valid from an hour ago for an hour.
type PKI struct {
	// CA is the authority's certificate, CAPEM the same in PEM, and Pool a pool holding it.
	CA    *x509.Certificate
	CAPEM []byte
	Pool  *x509.CertPool
	key   *ecdsa.PrivateKey
}

// NewPKI makes a new authority.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "blindfold test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	var ca *x509.Certificate
	if err == nil {
		ca, err = x509.ParseCertificate(der)
	}
	if err != nil {
		t.Fatalf("test CA: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &PKI{CA: ca, CAPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Pool: pool, key: key}
}

// CertSpec says what a certificate is for and whom it names.
type CertSpec struct {
	// CommonName is the subject's CN.
	CommonName string
	// Usage is x509.ExtKeyUsageServerAuth or x509.ExtKeyUsageClientAuth.
	Usage x509.ExtKeyUsage
	// DNSNames and IPs are the subject alternative names.
	DNSNames []string
	IPs      []net.IP
	// URI, if set, is a URI SAN (a SPIFFE ID, say).
	URI string
}

// Cert is an issued certificate with its private key.
type Cert struct {
	// TLS is the certificate and key for a tls.Config.
	TLS tls.Certificate
	// CertPEM and KeyPEM are the same in PEM (the key as PKCS #8).
	CertPEM, KeyPEM []byte
}

// Issue signs a certificate as spec says.
func (p *PKI) Issue(t testing.TB, spec CertSpec) *Cert {
	t.Helper()
	key := newKey(t)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: spec.CommonName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{spec.Usage},
		DNSNames:     spec.DNSNames,
		IPAddresses:  spec.IPs,
	}
	if spec.URI != "" {
		u, err := url.Parse(spec.URI)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.CA, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &Cert{
		TLS:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	}
}

// Server issues a server certificate for 127.0.0.1 and localhost, named cn.
func (p *PKI) Server(t testing.TB, cn string) *Cert {
	t.Helper()
	return p.Issue(t, CertSpec{CommonName: cn, Usage: x509.ExtKeyUsageServerAuth,
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}})
}

// Client issues a client certificate named cn, with uri as its URI SAN unless uri is empty.
func (p *PKI) Client(t testing.TB, cn, uri string) *Cert {
	t.Helper()
	return p.Issue(t, CertSpec{CommonName: cn, Usage: x509.ExtKeyUsageClientAuth, URI: uri})
}

// ServerTLS is a server configuration presenting cert; with requireClient, callers must present a certificate the
// authority issued.
func (p *PKI) ServerTLS(cert *Cert, requireClient bool) *tls.Config {
	c := &tls.Config{Certificates: []tls.Certificate{cert.TLS}, MinVersion: tls.VersionTLS12}
	if requireClient {
		c.ClientCAs, c.ClientAuth = p.Pool, tls.RequireAndVerifyClientCert
	}
	return c
}

// ClientTLS is a client configuration trusting the authority and presenting cert (none if cert is nil).
func (p *PKI) ClientTLS(cert *Cert) *tls.Config {
	c := &tls.Config{RootCAs: p.Pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		c.Certificates = []tls.Certificate{cert.TLS}
	}
	return c
}

// WriteCA writes the authority's certificate (PEM) to dir/name and returns the path.
func (p *PKI) WriteCA(t testing.TB, dir, name string) string {
	t.Helper()
	return writeFile(t, dir, name, p.CAPEM)
}

// Write writes the certificate and its key (PEM) to dir/certName and dir/keyName and returns the paths.
func (c *Cert) Write(t testing.TB, dir, certName, keyName string) (certPath, keyPath string) {
	t.Helper()
	return writeFile(t, dir, certName, c.CertPEM), writeFile(t, dir, keyName, c.KeyPEM)
}

func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}
