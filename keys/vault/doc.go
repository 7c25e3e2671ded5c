// Package vault is the Vault Transit key-encryption key for the keys package: KEK wraps each scope's keyset with its own
// Transit key (aes256-gcm96, derived, the keyset's associated data as context), found from the associated data
// (keys.ScopeOfKeysetAD), so one KEK serves every scope.
//
// It lives apart from keys so that only programs that talk to Vault link the Vault client: importing keys, policy or
// sdkplugin does not.
//
// Shredding a scope (keys.Manager.Shred) deletes the scope's Transit key first (KEK implements keys.ScopeDestroyer); a
// keyset whose Transit key is gone counts as shredded, even one restored from a backup. Manager.Rewrap moves stored
// keysets to the newest Transit key version inside Vault (KEK implements keys.Rewrapper). Errors wrap keys.ErrUnwrap when
// Transit rejects a ciphertext and keys.ErrKEKKeyMissing when the scope's Transit key does not exist. See docs/vault.md.
package vault
