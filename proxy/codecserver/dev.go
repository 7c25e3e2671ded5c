package codecserver

import (
	"github.com/blindfold-dev/blindfold/policy"
)

// DevSubject is the identity DevConfig gives requests that carry no token.
const DevSubject = "dev"

// DevConfig returns the configuration `blindfold dev` uses on loopback: requests without a token act as DevSubject
// (the Web UI sends no token to an http:// endpoint), a static devToken (if not empty) acts as DevSubject too, and
// policy.DevAccess lets them decode and encode every namespace. Every decision is still audited.
// Never serve it on a non-loopback address.
func DevConfig(c Codec, audit AuditLog, devToken string, uiOrigins ...string) (Config, error) {
	id := policy.Identity{Subject: DevSubject}
	var chain Chain
	if devToken != "" {
		st, err := NewStaticTokens(map[string]policy.Identity{devToken: id})
		if err != nil {
			return Config{}, err
		}
		chain = append(chain, st)
	}
	chain = append(chain, Anonymous{Identity: id})
	return Config{
		Codec:          c,
		Authenticator:  chain,
		Authorizer:     policy.DevAccess(),
		Audit:          audit,
		AllowedOrigins: uiOrigins,
	}, nil
}
