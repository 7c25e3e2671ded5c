package authze2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindfold-dev/blindfold/internal/testenv"
)

// rawCA is a second authority the gateway trusts, for certificates testenv.PKI does not issue (several URI SANs,
// expired): its certificate is added to the PKI's pool before the gateway starts.
type rawCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newRawCA(t testing.TB) *rawCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "authze2e raw CA"},
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &rawCA{cert: cert, key: key}
}

// client issues a client certificate named cn with uris as its URI SANs, valid until notAfter.
func (ca *rawCA) client(t testing.TB, cn string, notAfter time.Time, uris ...string) *testenv.Cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return &testenv.Cert{TLS: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
}

// TestClientCertificates presents client certificates that are wrong one way each for the HR worker's rule (worker
// on hr, by the SAN glob spiffe://test/ns/hr/sa/*) and checks each is refused: at the handshake when the certificate
// does not verify, with PermissionDenied naming the identity when it verifies but names no one the policy lets in.
func TestClientCertificates(t *testing.T) {
	t.Parallel()
	skipShort(t)
	pki, iss := testenv.NewPKI(t), newIssuer(t)
	raw := newRawCA(t)
	pki.Pool.AddCert(raw.cert)
	e := newEnv(t, pki, iss, matrixPolicy)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	const (
		admitted   = "admitted"
		handshake  = "refused at the handshake"
		permission = "PermissionDenied"
	)
	tests := []struct {
		name string
		cert *testenv.Cert
		want string
		// names is what a PermissionDenied must name.
		names string
	}{
		{"the hr worker (control)", pki.Client(t, "hr-worker", hrWorkerID), admitted, ""},
		{"the hr worker, from the second trusted CA (control)", raw.client(t, "hr-worker", time.Now().Add(time.Hour), hrWorkerID), admitted, ""},
		{"an untrusted CA", testenv.NewPKI(t).Client(t, "hr-worker", hrWorkerID), handshake, ""},
		{"expired", raw.client(t, "hr-worker", time.Now().Add(-time.Hour), hrWorkerID), handshake, ""},
		{"a server certificate", pki.Issue(t, testenv.CertSpec{CommonName: "hr-worker", Usage: x509.ExtKeyUsageServerAuth, URI: hrWorkerID}), handshake, ""},
		{"no SPIFFE ID", pki.Client(t, "hr-worker", ""), permission, "CN=hr-worker"},
		{"a SPIFFE ID one level deeper than the glob", pki.Client(t, "hr-worker", hrWorkerID+"/x"), permission, hrWorkerID + "/x"},
		{"the hr path under another trust domain", pki.Client(t, "hr-worker", "spiffe://evil/ns/hr/sa/worker"), permission, "spiffe://evil/ns/hr/sa/worker"},
		{"not a SPIFFE URI", pki.Client(t, "hr-worker", "https://test/ns/hr/sa/worker"), permission, "CN=hr-worker"},
		// An X.509-SVID has exactly one URI SAN; a certificate with a second one must not collect the rights of both.
		{"two SPIFFE IDs, the hr one second", raw.client(t, "two-ids", time.Now().Add(time.Hour), paymentsWorkerID, hrWorkerID), codes.Unauthenticated.String(), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			who := caller{name: tc.name, cert: tc.cert}
			err := pollWorkflowTask(ctx, e.conn(t, who), nsHR)
			var got string
			switch code := status.Code(err); {
			case code == codes.PermissionDenied:
				got = permission
			case code == codes.Unavailable:
				got = handshake
			case !isAuthError(err):
				got = admitted
			default:
				got = code.String()
			}
			if got != tc.want {
				t.Fatalf("worker poll on hr: %s (%s), want %s", got, describeCode(err), tc.want)
			}
			if got == permission && tc.names != "" {
				if err := messageNames(err, tc.names); err != nil {
					t.Error(err)
				}
			}
		})
	}
}
