//go:build race

package keys_test

// raceEnabled: the race detector slows every store read ~7x, so storm tests run a smaller storm under it.
const raceEnabled = true
