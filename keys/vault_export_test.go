package keys

// KeysetADForTest exposes the associated data a scope keyset is wrapped with, for KEK tests.
func KeysetADForTest(scope string, created map[string]string) []byte { return keysetAD(scope, created) }
