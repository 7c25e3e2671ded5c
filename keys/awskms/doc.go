// Package awskms is the AWS KMS key-encryption key for the keys package: KEK wraps every scope's keyset with one
// symmetric KMS key (Encrypt/Decrypt, SYMMETRIC_DEFAULT), the scope and a digest of the keyset's associated data in the
// KMS encryption context, so a keyset wrapped for one scope does not unwrap for another and CloudTrail shows which scope
// each call was for. Key policies can grant a replica only some scopes with the kms:EncryptionContext:blindfold-scope
// condition key.
//
// It lives apart from keys so that only programs that talk to KMS link the AWS SDK. Credentials come from the AWS SDK's
// default chain (environment, shared config and profiles, web identity / IRSA, ECS and EC2 instance roles); region and
// endpoint are configurable (a VPC endpoint, FIPS, or a test KMS).
//
// Errors wrap keys.ErrUnwrap when KMS rejects the ciphertext (InvalidCiphertextException: other scope, tampering;
// IncorrectKeyException: wrapped by another KMS key) and keys.ErrKEKKeyMissing when the KMS key no longer exists or is
// pending deletion, which the Manager treats as a shredded scope: scheduling the KMS key's deletion is how every keyset
// it wrapped, backups included, is destroyed. A disabled key, a denied call, throttling or an unreachable KMS are other
// errors: the Manager keeps serving cached keysets until their TTL and then fails closed.
//
// Rotation: KMS's automatic rotation of the key's backing material needs nothing from Blindfold. To move to another KMS
// key, configure the new key and run Manager.Rewrap (KEK implements keys.Rewrapper with KMS ReEncrypt, so keysets never
// leave KMS in plaintext), then disable the old key. See docs/keys.md.
package awskms
