// Package kekplugin is the KEK plugin: a key-encryption key served by a separate process over gRPC, so GCP KMS, Azure
// Key Vault or an in-house key service wrap Blindfold's scope keysets without Blindfold linking their SDKs.
//
// The protocol is kekpluginpb/kekplugin.proto: Wrap, Unwrap (both with the scope and the keyset's associated data) and
// Health. The client side is KEK, a keys.KEK; the server side is Serve, which answers the protocol with a small
// Backend that the plugin author writes. A plugin in another language implements the proto directly; the status codes
// in it are the contract (docs/kek-plugin.md).
//
// The plugin sees plaintext keysets: run it on the same host (a unix socket with mode 0600, see ListenUnix) or behind
// mutual TLS.
package kekplugin
