// Package vaultdev runs a real, in-process HashiCorp Vault server (v1.14.1,
// MPL-2.0) with Transit mounted, for Blindfold's tests and dev stack only.
//
// It lives in its own Go module so that Vault's large dependency tree never
// enters the main module; the main module starts the vaultdev binary through
// internal/vaultdevproc instead. The server listens on loopback only, uses a
// single Shamir unseal key, and keeps that key next to the data when storage is
// file-backed: it is a test fixture, never a production Vault.
package vaultdev
