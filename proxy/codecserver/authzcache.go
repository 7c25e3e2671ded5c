package codecserver

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/blindfold-dev/blindfold/policy"
)

// maxDecisions bounds the decision cache; past it the cache starts over (a miss costs one rule evaluation).
const maxDecisions = 10000

// decisionCache remembers a *policy.Access's decisions per (identity, namespace, operation). It is exact, not a
// heuristic: an Access is immutable, and its decision depends on nothing else (the context is unused).
type decisionCache struct {
	a  *policy.Access
	mu sync.RWMutex
	m  map[string]policy.Decision
}

func newDecisionCache(a *policy.Access) *decisionCache {
	return &decisionCache{a: a, m: map[string]policy.Decision{}}
}

// Authorize implements Authorizer.
func (c *decisionCache) Authorize(ctx context.Context, id policy.Identity, namespace string, op policy.Operation) policy.Decision {
	// The key is built on the stack and looked up without becoming a string: a hit, every request of a CLI after
	// the first, allocates nothing.
	var buf [256]byte
	key := appendDecisionKey(buf[:0], id, namespace, op)
	c.mu.RLock()
	d, ok := c.m[string(key)]
	c.mu.RUnlock()
	if ok {
		return d
	}
	d = c.a.Authorize(ctx, id, namespace, op)
	c.mu.Lock()
	if len(c.m) >= maxDecisions {
		c.m = map[string]policy.Decision{}
	}
	c.m[string(key)] = d
	c.mu.Unlock()
	return d
}

// decisionKey length-prefixes every field, so that no subject or group name (a JWT claim: any text) can make two
// different identities share a key.
func decisionKey(id policy.Identity, namespace string, op policy.Operation) string {
	return string(appendDecisionKey(nil, id, namespace, op))
}

// appendDecisionKey appends decisionKey's bytes to b.
func appendDecisionKey(b []byte, id policy.Identity, namespace string, op policy.Operation) []byte {
	field := func(s string) {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
	}
	field(id.Method)
	field(id.Issuer)
	field(id.Subject)
	field(namespace)
	field(string(op))
	b = strconv.AppendInt(b, int64(len(id.Groups)), 10)
	for _, g := range id.Groups {
		field(g)
	}
	// Rules may match certificate SANs too.
	b = strconv.AppendInt(b, int64(len(id.SANs)), 10)
	for _, san := range id.SANs {
		field(san)
	}
	return b
}

// PolicySource gives the policy in force; *policy.Store implements it (and reloads it).
type PolicySource interface {
	Current() *policy.Policy
}

// AccessOf returns an Authorizer that consults the access section of src's current policy on every request, so a
// reload applies to the next request and a revoked identity is refused from then on. Decisions are cached per policy
// snapshot: a new snapshot starts an empty cache.
func AccessOf(src PolicySource) Authorizer {
	return &snapshotAuthorizer{src: src}
}

type snapshotAuthorizer struct {
	src   PolicySource
	cache atomic.Pointer[decisionCache]
}

// Authorize implements Authorizer.
func (s *snapshotAuthorizer) Authorize(ctx context.Context, id policy.Identity, namespace string, op policy.Operation) policy.Decision {
	a := s.src.Current().Access
	c := s.cache.Load()
	if c == nil || c.a != a {
		c = newDecisionCache(a)
		s.cache.Store(c)
	}
	return c.Authorize(ctx, id, namespace, op)
}
