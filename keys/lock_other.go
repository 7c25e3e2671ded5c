//go:build !unix

package keys

import "sync"

var dirLock sync.Mutex

// lockDir only excludes writers within this process on platforms without flock; run one key-admin process at a time there.
func lockDir(string) (func(), error) {
	dirLock.Lock()
	return dirLock.Unlock, nil
}
