// Package policy reads Blindfold's one YAML policy file, decides what the proxy encrypts and who may decode or encode which namespace, and keeps the hash-chained audit log of those decisions.
//
// The policy file has three top-level sections: "version", "namespaces" (what the
// proxy encrypts per namespace, with which key scope or per-tenant scopes, and what
// it does with plaintext from SDKs) and "access" (the codec endpoint's authorization
// rules). docs/policy.md describes the schema; deploy/policy.example.yaml is a full
// example. Loading is strict: unknown fields, duplicate keys, aliases and wrong types
// are errors that name the file, line, column and field, and a namespace entry that
// would let plaintext out is refused unless it says allow_plaintext: true.
//
// A Store holds the current policy behind an atomic pointer and reloads it when the
// file changes or the process gets SIGHUP; an invalid new file is logged and the old
// policy stays in force.
package policy
