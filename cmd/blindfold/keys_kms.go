package main

import (
	"errors"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/blindfold-dev/blindfold/keys/awskms"
	"github.com/blindfold-dev/blindfold/keys/pkcs11"
)

// PKCS11PINEnv holds the PKCS#11 user PIN when --pkcs11-pin-file is not given (there is no PIN flag: command lines are
// visible to every user of the machine).
const PKCS11PINEnv = "BLINDFOLD_PKCS11_PIN"

// kmsFlags are the flags of the AWS KMS and PKCS#11 key-encryption keys.
type kmsFlags struct {
	awsKeyID, awsRegion, awsEndpoint, awsProfile string
	awsTimeout                                   time.Duration

	p11Module, p11Token, p11Key, p11PINFile string
	p11Create                               bool
	p11Timeout                              time.Duration
}

const kmsKEKHelp = `
  awskms one AWS KMS key (--aws-kms-key-id: key id, ARN or alias) wraps every
         scope's keyset; the scope is in the encryption context (CloudTrail
         shows it; key policies can limit a replica to some scopes with
         kms:EncryptionContext:blindfold-scope). Credentials come from the AWS
         default chain (environment, profile, IRSA/web identity, instance role).
         Scheduling the KMS key's deletion shreds every scope, backups included.
  pkcs11 one AES-256 key on a PKCS#11 token (HSM) wraps every scope's keyset
         with AES-GCM on the token, the scope as additional data; the key never
         leaves the token. PIN from --pkcs11-pin-file or $` + PKCS11PINEnv + `.
         Needs a cgo build (the static release image has no PKCS#11). Destroying
         the token key shreds every scope, backups included. See docs/keys.md.`

func (f *kmsFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&f.awsKeyID, "aws-kms-key-id", os.Getenv("BLINDFOLD_AWS_KMS_KEY_ID"), "AWS KMS key for --kek awskms: key id, key ARN or alias/NAME (env BLINDFOLD_AWS_KMS_KEY_ID)")
	fs.StringVar(&f.awsRegion, "aws-kms-region", "", "AWS region of the KMS key (default: the key ARN's, else $AWS_REGION or the profile's)")
	fs.StringVar(&f.awsEndpoint, "aws-kms-endpoint", "", "KMS endpoint URL, e.g. a VPC interface endpoint (default: AWS's)")
	fs.StringVar(&f.awsProfile, "aws-kms-profile", "", "AWS shared config profile (default $AWS_PROFILE)")
	fs.DurationVar(&f.awsTimeout, "aws-kms-timeout", awskms.DefaultTimeout, "timeout of each KMS call, retries included")
	fs.StringVar(&f.p11Module, "pkcs11-module", os.Getenv("BLINDFOLD_PKCS11_MODULE"), "path of the token's PKCS#11 library for --kek pkcs11 (env BLINDFOLD_PKCS11_MODULE)")
	fs.StringVar(&f.p11Token, "pkcs11-token-label", "", "label of the PKCS#11 token")
	fs.StringVar(&f.p11Key, "pkcs11-key-label", "blindfold-kek", "label of the AES key on the token")
	fs.StringVar(&f.p11PINFile, "pkcs11-pin-file", "", "file holding the token's user PIN (default $"+PKCS11PINEnv+")")
	fs.BoolVar(&f.p11Create, "pkcs11-create-key", false, "generate the AES key on the token if it has none with --pkcs11-key-label")
	fs.DurationVar(&f.p11Timeout, "pkcs11-timeout", pkcs11.DefaultTimeout, "timeout of each token operation")
}

func (f *kmsFlags) validate(kind string) error {
	switch kind {
	case "awskms":
		if f.awsKeyID == "" {
			return errors.New("--kek awskms needs --aws-kms-key-id (or BLINDFOLD_AWS_KMS_KEY_ID)")
		}
	case "pkcs11":
		if f.p11Module == "" || f.p11Token == "" {
			return errors.New("--kek pkcs11 needs --pkcs11-module and --pkcs11-token-label")
		}
		if f.p11PINFile == "" && os.Getenv(PKCS11PINEnv) == "" {
			return errors.New("--kek pkcs11 needs the user PIN in --pkcs11-pin-file or $" + PKCS11PINEnv)
		}
	}
	return nil
}

func (f *kmsFlags) awsConfig() awskms.Config {
	return awskms.Config{KeyID: f.awsKeyID, Region: f.awsRegion, Endpoint: f.awsEndpoint, Profile: f.awsProfile, Timeout: f.awsTimeout}
}

func (f *kmsFlags) pkcs11Config() pkcs11.Config {
	c := pkcs11.Config{Module: f.p11Module, TokenLabel: f.p11Token, KeyLabel: f.p11Key, PINFile: f.p11PINFile,
		CreateKey: f.p11Create, Timeout: f.p11Timeout}
	if c.PINFile == "" {
		c.PIN = os.Getenv(PKCS11PINEnv)
	}
	return c
}
