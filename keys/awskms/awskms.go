package awskms

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/arn"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/blindfold-dev/blindfold/keys"
)

// Encryption context keys of every wrap. ContextScope is the scope in clear (for CloudTrail and key policy conditions);
// ContextKeyset binds the rest of the keyset's associated data (its format and creation times) by digest.
const (
	ContextScope  = "blindfold-scope"
	ContextKeyset = "blindfold-keyset"
)

// Defaults of Config.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultMaxAttempts = 3
)

// Config configures a KEK.
type Config struct {
	// KeyID names the symmetric KMS key: key id, key ARN, alias name ("alias/blindfold") or alias ARN. Required. Decrypt
	// always names it too, so a keyset is never unwrapped by some other key the credentials happen to reach.
	KeyID string
	// Region is the KMS region. Empty: the region of a KeyID ARN, else the default chain ($AWS_REGION, shared config).
	Region string
	// Endpoint overrides the KMS endpoint URL (a VPC interface endpoint, or a test KMS such as local-kms). Empty: AWS's.
	Endpoint string
	// Profile selects a shared config profile (empty: $AWS_PROFILE, else the default one).
	Profile string
	// Timeout bounds each KMS call, retries included (default DefaultTimeout).
	Timeout time.Duration
	// MaxAttempts is the SDK's attempts per call, first one included (0: DefaultMaxAttempts; 1: no retries).
	MaxAttempts int
	// Credentials replaces the default credential chain (tests, or programs that build their own provider).
	Credentials aws.CredentialsProvider
	// HTTPClient replaces the SDK's HTTP client (custom TLS roots for a private endpoint).
	HTTPClient *http.Client
}

// KEK wraps scope keysets with one AWS KMS key; see the package documentation.
type KEK struct {
	client  *kms.Client
	keyID   string
	region  string
	timeout time.Duration
}

var (
	_ keys.KEK       = (*KEK)(nil)
	_ keys.Rewrapper = (*KEK)(nil)
)

// New returns a KEK for cfg. It loads the AWS configuration (credentials are resolved lazily, on the first call) but does
// not call KMS: use Check for that.
func New(ctx context.Context, cfg Config) (*KEK, error) {
	if strings.TrimSpace(cfg.KeyID) == "" {
		return nil, errors.New("aws kms: key id is required (a key id, key ARN or alias)")
	}
	region := cfg.Region
	if region == "" {
		if a, err := arn.Parse(cfg.KeyID); err == nil {
			region = a.Region
		}
	}
	attempts := cfg.MaxAttempts
	if attempts <= 0 {
		attempts = DefaultMaxAttempts
	}
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRetryMaxAttempts(attempts)}
	if region != "" {
		opts = append(opts, awsconfig.WithRegion(region))
	}
	if cfg.Profile != "" {
		opts = append(opts, awsconfig.WithSharedConfigProfile(cfg.Profile))
	}
	if cfg.Credentials != nil {
		opts = append(opts, awsconfig.WithCredentialsProvider(cfg.Credentials))
	}
	if cfg.HTTPClient != nil {
		opts = append(opts, awsconfig.WithHTTPClient(cfg.HTTPClient))
	}
	ac, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("aws kms: load aws configuration: %w", err)
	}
	if ac.Region == "" {
		return nil, errors.New("aws kms: no region: set --aws-kms-region, $AWS_REGION, or use a key ARN")
	}
	client := kms.NewFromConfig(ac, func(o *kms.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	t := cfg.Timeout
	if t <= 0 {
		t = DefaultTimeout
	}
	return &KEK{client: client, keyID: cfg.KeyID, region: ac.Region, timeout: t}, nil
}

// KeyID is the configured KMS key.
func (k *KEK) KeyID() string { return k.keyID }

// Region is the KMS region calls go to.
func (k *KEK) Region() string { return k.region }

// Client is the KMS client, for administration the KEK does not wrap (key rotation, deletion, policies).
func (k *KEK) Client() *kms.Client { return k.client }

// encryptionContext is the KMS encryption context for a keyset's associated data.
func encryptionContext(ad []byte) (map[string]string, error) {
	scope, err := keys.ScopeOfKeysetAD(ad)
	if err != nil {
		return nil, fmt.Errorf("aws kms: %w", err)
	}
	sum := sha256.Sum256(ad)
	return map[string]string{ContextScope: scope, ContextKeyset: hex.EncodeToString(sum[:])}, nil
}

// EncryptWithContext wraps plaintext (a keyset, well under KMS's 4 KiB limit) under the KMS key, bound to the scope named
// in associatedData.
func (k *KEK) EncryptWithContext(ctx context.Context, plaintext, associatedData []byte) ([]byte, error) {
	ec, err := encryptionContext(associatedData)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	out, err := k.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(k.keyID), Plaintext: plaintext, EncryptionContext: ec})
	if err != nil {
		return nil, k.opError("encrypt", ec[ContextScope], err)
	}
	return out.CiphertextBlob, nil
}

// DecryptWithContext unwraps ciphertext with the KMS key and the scope named in associatedData. A ciphertext KMS rejects
// (other scope or keyset, tampering, another key's) wraps keys.ErrUnwrap; a key that no longer exists or is pending
// deletion wraps keys.ErrKEKKeyMissing; anything else (disabled key, denied, throttled, unreachable, ctx) is neither.
func (k *KEK) DecryptWithContext(ctx context.Context, ciphertext, associatedData []byte) ([]byte, error) {
	ec, err := encryptionContext(associatedData)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	out, err := k.client.Decrypt(ctx, &kms.DecryptInput{KeyId: aws.String(k.keyID), CiphertextBlob: ciphertext, EncryptionContext: ec})
	if err != nil {
		return nil, k.opError("decrypt", ec[ContextScope], err)
	}
	return out.Plaintext, nil
}

// RewrapWithContext moves ciphertext to the configured KMS key inside KMS (ReEncrypt), without the keyset leaving KMS in
// plaintext: the KMS key rotation of Blindfold. KMS finds the source key from the ciphertext (the credentials need
// kms:ReEncryptFrom on it and kms:ReEncryptTo on the configured key); the encryption context stays the same. KMS's own
// automatic rotation of a key's backing material needs no rewrap at all. It is what Manager.Rewrap and "blindfold keys
// rewrap" call; afterwards the old key can be disabled and its deletion scheduled.
func (k *KEK) RewrapWithContext(ctx context.Context, ciphertext, associatedData []byte) ([]byte, error) {
	ec, err := encryptionContext(associatedData)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	out, err := k.client.ReEncrypt(ctx, &kms.ReEncryptInput{
		CiphertextBlob: ciphertext, SourceEncryptionContext: ec,
		DestinationKeyId: aws.String(k.keyID), DestinationEncryptionContext: ec,
	})
	if err != nil {
		return nil, k.opError("re-encrypt", ec[ContextScope], err)
	}
	return out.CiphertextBlob, nil
}

// KeyInfo describes the KMS key.
type KeyInfo struct {
	ARN   string
	State types.KeyState
	// DeletionDate is set when the key is pending deletion.
	DeletionDate time.Time
}

// Check describes the KMS key and verifies it can wrap keysets: a symmetric encryption key (SYMMETRIC_DEFAULT,
// ENCRYPT_DECRYPT) that is enabled. A missing key wraps keys.ErrKEKKeyMissing.
func (k *KEK) Check(ctx context.Context) (KeyInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	out, err := k.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(k.keyID)})
	if err != nil {
		return KeyInfo{}, k.opError("describe key", "", err)
	}
	md := out.KeyMetadata
	info := KeyInfo{ARN: aws.ToString(md.Arn), State: md.KeyState}
	if md.DeletionDate != nil {
		info.DeletionDate = *md.DeletionDate
	}
	switch {
	case md.KeySpec != "" && md.KeySpec != types.KeySpecSymmetricDefault:
		return info, fmt.Errorf("aws kms key %s is %s; want a SYMMETRIC_DEFAULT key", info.ARN, md.KeySpec)
	case md.KeyUsage != "" && md.KeyUsage != types.KeyUsageTypeEncryptDecrypt:
		return info, fmt.Errorf("aws kms key %s has usage %s; want ENCRYPT_DECRYPT", info.ARN, md.KeyUsage)
	case md.KeyState == types.KeyStatePendingDeletion:
		return info, fmt.Errorf("%w: aws kms key %s is pending deletion on %s (aws kms cancel-key-deletion restores it until then)",
			keys.ErrKEKKeyMissing, info.ARN, info.DeletionDate.UTC().Format(time.DateOnly))
	case md.KeyState != types.KeyStateEnabled:
		return info, fmt.Errorf("aws kms key %s is %s; want Enabled", info.ARN, md.KeyState)
	}
	return info, nil
}

// opError names what failed and wraps the sentinel the Manager branches on, if any. Error texts never include key
// material or ciphertext.
func (k *KEK) opError(op, scope string, err error) error {
	what := fmt.Sprintf("aws kms %s with key %s in %s", op, k.keyID, k.region)
	if scope != "" {
		what += fmt.Sprintf(" (scope %q)", scope)
	}
	var (
		invalidCT *types.InvalidCiphertextException
		incorrect *types.IncorrectKeyException
		notFound  *types.NotFoundException
		badState  *types.KMSInvalidStateException
		disabled  *types.DisabledException
	)
	switch {
	case errors.As(err, &invalidCT):
		return fmt.Errorf("%w: %s: ciphertext rejected (another scope or keyset, or tampered): %s", keys.ErrUnwrap, what, invalidCT.ErrorMessage())
	case errors.As(err, &incorrect):
		return fmt.Errorf("%w: %s: the ciphertext was wrapped by another kms key: %s", keys.ErrUnwrap, what, incorrect.ErrorMessage())
	case errors.As(err, &notFound):
		return fmt.Errorf("%w: %s: key not found (deleted, or another account or region): %s", keys.ErrKEKKeyMissing, what, notFound.ErrorMessage())
	case errors.As(err, &badState) && strings.Contains(strings.ToLower(badState.ErrorMessage()), "pending deletion"):
		// The key's deletion is scheduled: a shred in progress. Until the date, aws kms cancel-key-deletion (then
		// enable-key) brings it back, and the Manager's next reload sees that.
		return fmt.Errorf("%w: %s: key is pending deletion (cancel-key-deletion restores it until the deletion date): %s", keys.ErrKEKKeyMissing, what, badState.ErrorMessage())
	case errors.As(err, &disabled):
		return fmt.Errorf("%s: key is disabled (aws kms enable-key restores it): %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
