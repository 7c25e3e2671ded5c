package proxy

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/keys"
)

// TestCodecStatusFromCodecSentinels: the gRPC code and error kind of a codec error follow from the codec package's sentinels
// alone, so any keyring that keeps codec.Keyring's error contract is mapped like the keys package.
func TestCodecStatusFromCodecSentinels(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		code codes.Code
		kind ErrorKind
	}{
		{"key unavailable", codec.ErrKeyUnavailable, codes.Unavailable, KindKeyUnavailable},
		{"key rejected", codec.ErrKeyRejected, codes.FailedPrecondition, KindKeyUnavailable},
		{"rejected while unavailable is final", fmt.Errorf("%w: reload: %w", codec.ErrKeyUnavailable, codec.ErrKeyRejected), codes.FailedPrecondition, KindKeyUnavailable},
		{"unknown key", codec.ErrUnknownKey, codes.FailedPrecondition, KindUnknownKey},
		{"key destroyed", codec.ErrKeyDestroyed, codes.FailedPrecondition, KindKeyDestroyed},
		{"wrong namespace", codec.ErrWrongNamespace, codes.FailedPrecondition, KindWrongNamespace},
		{"unsupported version", codec.ErrUnsupportedVersion, codes.FailedPrecondition, KindUnsupportedVersion},
		{"tampered", codec.ErrTampered, codes.DataLoss, KindTampered},
		{"truncated", codec.ErrTruncated, codes.DataLoss, KindTampered},
		{"malformed", codec.ErrMalformed, codes.DataLoss, KindTampered},
		{"decoded too large", codec.ErrDecodedTooLarge, codes.ResourceExhausted, KindEncode},
		{"canceled", context.Canceled, codes.Canceled, KindCanceled},
		{"other", errors.New("key store on fire"), codes.Internal, KindEncode},
		// The keys package's sentinels, as the keys.Manager returns them.
		{"keys unavailable", keys.ErrUnavailable, codes.Unavailable, KindKeyUnavailable},
		{"keys unwrap", keys.ErrUnwrap, codes.FailedPrecondition, KindKeyUnavailable},
		{"keys unavailable wrapping unwrap", fmt.Errorf("%w: scope %q: %w", keys.ErrUnavailable, "s", keys.ErrUnwrap), codes.FailedPrecondition, KindKeyUnavailable},
		{"keys scope not found", keys.ErrScopeNotFound, codes.FailedPrecondition, KindUnknownKey},
		{"keys invalid scope", keys.ErrInvalidScope, codes.Internal, KindEncode},
	} {
		st, kind := codecStatus(opEncode, "ns", fmt.Errorf("encode payload 0: %w", tc.err))
		if got := status.Code(st); got != tc.code || kind != tc.kind {
			t.Errorf("%s: %s %s, want %s %s", tc.name, got, kind, tc.code, tc.kind)
		}
	}
}
