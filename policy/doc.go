// Package policy reads Blindfold's one YAML policy file, decides who may decode or encode which namespace, and keeps the hash-chained audit log of those decisions.
//
// The policy file has top-level sections; this package currently understands
// "version" and "access" (the codec endpoint's authorization rules). Encryption
// rules per namespace ("namespaces") are added by a later change in the same file.
// Loading is strict: unknown fields, duplicate keys, aliases and wrong types are
// errors that name the file, line, column and field.
package policy
