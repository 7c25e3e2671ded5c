package codecserver

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc/oidctest"

	"github.com/blindfold-dev/blindfold/policy"
)

// signedByIssuer checks a compact RS256 JWS against pub independently of go-oidc: the oracle for what the
// authenticators may accept.
func signedByIssuer(pub *rsa.PublicKey, raw string) bool {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return false
	}
	hdr, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return false
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(hdr, &h) != nil || h.Alg != "RS256" {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return false
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	return rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig) == nil
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// FuzzTokenAuth sends arbitrary Authorization and Authorization-Extras headers through the codec endpoint's
// authenticator chain (OIDC against a real in-process issuer, then static tokens) and its VerifyToken: it must never
// panic, never accept a JWT the issuer's key did not sign nor a static token not in the set, and every refusal must be
// typed (ErrNoCredentials or ErrInvalidToken). The issuer's keys are fetched once; later fetches (every forged
// signature asks for one) are answered by the refetch limit, and the key set comes from memory anyway.
func FuzzTokenAuth(f *testing.F) {
	// The issuer's key and URL are fixed, so the seeds signed here are valid in every fuzzing process.
	pemBytes, err := os.ReadFile(filepath.Join("testdata", "fuzz-issuer-key.pem"))
	if err != nil {
		f.Fatal(err)
	}
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		f.Fatal("testdata/fuzz-issuer-key.pem holds no PEM block")
	}
	key, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
	if err != nil {
		f.Fatal(err)
	}
	const iss = "https://issuer.fuzz.example"
	srv := &oidctest.Server{PublicKeys: []oidctest.PublicKey{{PublicKey: key.Public(), KeyID: "k1", Algorithm: "RS256"}}}
	srv.SetIssuer(iss)
	// The key set is served from memory: no listener, no network.
	keysClient := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, r)
		return w.Result(), nil
	})}
	o, err := NewOIDC(context.Background(), OIDCConfig{Issuer: iss, JWKSURL: iss + "/keys", Audiences: []string{"blindfold-codec"},
		AcceptIDTokenFromExtras: true, HTTPClient: keysClient, JWKSRefetchInterval: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	static := map[string]policy.Identity{"svc-token": {Subject: "svc"}, "Zm9vLmJhci5iYXo": {Subject: "dotless"}}
	st, err := NewStaticTokens(static)
	if err != nil {
		f.Fatal(err)
	}
	chain := Chain{o, st}

	sign := func(claims map[string]any) string {
		b, _ := json.Marshal(claims)
		return oidctest.SignIDToken(key, "k1", "RS256", string(b))
	}
	exp := int64(4102444800) // 2100-01-01: the seeds are the same in every process and stay valid
	valid := sign(map[string]any{"iss": iss, "sub": "alice", "aud": "blindfold-codec", "exp": exp, "groups": []string{"g"}})
	if id, err := chain.VerifyToken(context.Background(), valid); err != nil || id.Subject != "alice" {
		f.Fatalf("the issuer's own token: %+v %v", id, err)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	b, _ := json.Marshal(map[string]any{"iss": iss, "sub": "x", "aud": "blindfold-codec", "exp": exp})
	forgedTok := oidctest.SignIDToken(other, "k1", "RS256", string(b))
	parts := strings.Split(valid, ".")
	noneAlg := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + "."
	for _, seed := range [][2]string{
		{"Bearer " + valid, ""},
		{"bearer  " + valid + " ", ""},
		{"Bearer svc-token", ""},
		{"Bearer " + forgedTok, ""},
		{"Bearer " + noneAlg, ""},
		{"Bearer " + parts[0] + "." + parts[1] + ".", ""},
		{"Bearer " + sign(map[string]any{"iss": iss, "sub": "", "aud": "blindfold-codec", "exp": exp}), ""},
		{"Bearer " + sign(map[string]any{"iss": iss, "sub": "a", "aud": []any{"x", 1}, "exp": exp, "groups": "a b"}), ""},
		{"Bearer opaque", valid},
		{"", "Bearer " + valid},
		{"Basic c3ZjOnB3", ""},
		{"Bearer", ""},
		{"Bearer Zm9vLmJhci5iYXo", "a.b.c"},
		{"Bearer e30.e30.e30", ""},
		{"", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, authz, extras string) {
		r := httptest.NewRequest(http.MethodPost, "/decode", nil)
		if authz != "" {
			r.Header["Authorization"] = []string{authz}
		}
		if extras != "" {
			r.Header["Authorization-Extras"] = []string{extras}
		}
		// The tokens an identity may come from: the bearer token of either header, or Extras as it is.
		candidates := []string{bearer(authz), bearer(extras), strings.TrimSpace(extras)}
		accepted := func(id policy.Identity) bool {
			for _, c := range candidates {
				switch {
				case c == "":
				case id.Method == "static":
					if want, ok := static[c]; ok && want.Subject == id.Subject {
						return true
					}
				case id.Method == "oidc":
					if signedByIssuer(&key.PublicKey, c) && id.Issuer == iss && id.Subject != "" {
						return true
					}
				}
			}
			return false
		}
		id, err := chain.Authenticate(r)
		switch {
		case err == nil && !accepted(id):
			t.Fatalf("accepted %+v for Authorization %q, Extras %q", id, authz, extras)
		case err != nil && !isTyped(err):
			t.Fatalf("untyped refusal %v", err)
		}
		for _, c := range candidates[:2] {
			id, err := chain.VerifyToken(context.Background(), c)
			switch {
			case err == nil && !accepted(id):
				t.Fatalf("VerifyToken accepted %+v for %q", id, c)
			case err != nil && !isTyped(err):
				t.Fatalf("untyped refusal %v", err)
			}
		}
	})
}

// isTyped reports whether err is one the handler maps: no credentials, or an invalid token.
func isTyped(err error) bool {
	return errors.Is(err, ErrNoCredentials) || errors.Is(err, ErrInvalidToken)
}
