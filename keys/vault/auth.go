package vault

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// startAuth obtains the first token synchronously (so NewKEK fails fast on bad credentials) and then keeps it alive in the background.
func (k *KEK) startAuth(ctx context.Context, a Auth) error {
	method := a.Method
	if method == "" {
		method = AuthToken
	}
	var login func(ctx context.Context) (*vaultapi.Secret, error)
	switch method {
	case AuthToken:
		if a.Token != "" {
			k.client.SetToken(a.Token)
		}
		if k.client.Token() == "" {
			return errors.New("vault auth token: no token (set --vault-token, $VAULT_TOKEN or ~/.vault-token)")
		}
		// A static token cannot be obtained again; only renew it if Vault says it is renewable.
		s, err := k.client.Auth().Token().LookupSelfWithContext(ctx)
		var re *vaultapi.ResponseError
		if errors.As(err, &re) {
			return fmt.Errorf("vault auth token: look up token at %s: %w", k.addr, err)
		}
		if err != nil || s == nil {
			// Vault unreachable: start anyway (a cached keyset or a later call may work) but without renewal.
			k.log.Warn("vault token lookup failed; token will not be renewed", "vault", k.addr, "error", err)
			return nil
		}
		if ok, _ := s.TokenIsRenewable(); !ok {
			return nil
		}
		ttl, _ := s.TokenTTL()
		if ttl <= 0 {
			return nil
		}
		// LookupSelf returns the token's data, not an auth block; the lifetime watcher wants the latter.
		s.Auth = &vaultapi.SecretAuth{ClientToken: k.client.Token(), Renewable: true, LeaseDuration: int(ttl.Seconds())}
		k.runAuth(s, nil)
		return nil
	case AuthAppRole:
		mount := orDefault(a.MountPath, "approle")
		if a.RoleID == "" {
			return errors.New("vault auth approle: role_id is required")
		}
		login = func(ctx context.Context) (*vaultapi.Secret, error) {
			secretID := a.SecretID
			if a.SecretIDFile != "" {
				b, err := os.ReadFile(a.SecretIDFile)
				if err != nil {
					return nil, fmt.Errorf("read secret_id file: %w", err)
				}
				secretID = strings.TrimSpace(string(b))
			}
			return k.client.Logical().WriteWithContext(ctx, "auth/"+mount+"/login", map[string]any{"role_id": a.RoleID, "secret_id": secretID})
		}
	case AuthKubernetes:
		mount := orDefault(a.MountPath, "kubernetes")
		jwtPath := orDefault(a.JWTPath, DefaultKubernetesJWTPath)
		if a.Role == "" {
			return errors.New("vault auth kubernetes: role is required")
		}
		login = func(ctx context.Context) (*vaultapi.Secret, error) {
			jwt, err := os.ReadFile(jwtPath)
			if err != nil {
				return nil, fmt.Errorf("read service account token: %w", err)
			}
			return k.client.Logical().WriteWithContext(ctx, "auth/"+mount+"/login", map[string]any{"role": a.Role, "jwt": strings.TrimSpace(string(jwt))})
		}
	default:
		return fmt.Errorf("vault auth: unknown method %q (want token, approle or kubernetes)", method)
	}
	s, err := k.login(ctx, method, login)
	if err != nil {
		return err
	}
	k.runAuth(s, func(ctx context.Context) (*vaultapi.Secret, error) { return k.login(ctx, method, login) })
	return nil
}

func (k *KEK) login(ctx context.Context, method string, fn func(context.Context) (*vaultapi.Secret, error)) (*vaultapi.Secret, error) {
	s, err := fn(ctx)
	if err != nil {
		return nil, fmt.Errorf("vault auth %s: login at %s: %w", method, k.addr, err)
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return nil, fmt.Errorf("vault auth %s: login at %s returned no token", method, k.addr)
	}
	k.client.SetToken(s.Auth.ClientToken)
	k.log.Info("vault login", "method", method, "ttl", time.Duration(s.Auth.LeaseDuration)*time.Second, "renewable", s.Auth.Renewable)
	return s, nil
}

// runAuth renews the token in s until Close; when it can no longer be renewed (max TTL, revoked) and relogin is set, it logs in again,
// retrying with backoff while Vault is down. Cached keysets keep serving meanwhile.
func (k *KEK) runAuth(s *vaultapi.Secret, relogin func(context.Context) (*vaultapi.Secret, error)) {
	ctx, cancel := context.WithCancel(context.Background())
	k.stopAuth = cancel
	k.authDone = make(chan struct{})
	go func() {
		defer close(k.authDone)
		for {
			if s != nil {
				if !k.watch(ctx, s, relogin != nil) {
					return
				}
			}
			if relogin == nil {
				return
			}
			s = nil
			for wait := time.Second; s == nil; wait = min(2*wait, time.Minute) {
				ns, err := relogin(ctx)
				if err == nil {
					s = ns
					break
				}
				k.log.Warn("vault login failed; retrying", "error", err, "retry_in", wait)
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
	}()
}

// watch renews s until it ends; it reports whether the caller should log in again.
func (k *KEK) watch(ctx context.Context, s *vaultapi.Secret, canRelogin bool) bool {
	if !s.Auth.Renewable || s.Auth.LeaseDuration <= 0 {
		if s.Auth.LeaseDuration <= 0 {
			<-ctx.Done() // a token without TTL never expires
			return false
		}
		// Not renewable: log in again shortly before it expires.
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Duration(s.Auth.LeaseDuration) * time.Second * 4 / 5):
			return canRelogin
		}
	}
	w, err := k.client.NewLifetimeWatcher(&vaultapi.LifetimeWatcherInput{Secret: s})
	if err != nil {
		k.log.Warn("vault token renewal not started", "error", err)
		return canRelogin
	}
	go w.Start()
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case err := <-w.DoneCh():
			if err != nil {
				k.log.Warn("vault token renewal stopped", "error", err)
			} else {
				k.log.Info("vault token reached its max TTL")
			}
			return canRelogin
		case r := <-w.RenewCh():
			k.log.Debug("vault token renewed", "at", r.RenewedAt)
		}
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
