//go:build !unix

package policy

import "os"

// lockFile is a no-op where flock is unavailable: one writer process per audit log is then the operator's duty.
func lockFile(*os.File) error { return nil }
