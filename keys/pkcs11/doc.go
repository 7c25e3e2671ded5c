// Package pkcs11 is the PKCS#11 (HSM) key-encryption key for the keys package: KEK wraps every scope's keyset with one
// AES-256 key that lives on the token and never leaves it (created sensitive and non-extractable), using AES-GCM on the
// token (CKM_AES_GCM) with the keyset's associated data, which names the scope, as GCM additional authenticated data: a
// keyset wrapped for one scope fails authentication for any other.
//
// PKCS#11 modules are C libraries, so the implementation needs cgo and is compiled only with cgo enabled; without it
// (the static release image) New returns ErrNotCompiled and Config is all there is. See docs/keys.md for how an HSM user
// runs it.
//
// Errors wrap keys.ErrUnwrap when the token rejects the ciphertext (GCM authentication failed: other scope, tampering, or
// another key) and keys.ErrKEKKeyMissing when no key with the label is on the token, which the Manager treats as a
// shredded scope: destroying the token key (C_DestroyObject) destroys every keyset it wrapped, backups of the key
// directory included (though not backups of the token itself: HSM backup policy is part of the shred). A missing token,
// a wrong PIN, a closed session or a device error are other errors: the Manager keeps serving cached keysets until their
// TTL, then fails closed. A key is reported missing only while the token still answers as itself (a token that lost its
// storage may list no objects without an error), so an outage never passes for a shred. After a lost device (a device
// error, the token gone from its slot) the KEK initializes the module again and retries the call once, and so recovers
// by itself when the token is back; the error of a call that still fails names the token and the module.
package pkcs11
