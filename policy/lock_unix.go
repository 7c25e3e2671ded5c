//go:build unix

package policy

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive, non-blocking advisory lock so a second writer process is refused.
func lockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}
