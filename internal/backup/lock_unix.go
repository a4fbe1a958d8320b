//go:build unix

package backup

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lock holds <Dir>/<Prefix>.lock for the whole run. Two attempts at once
// (an attempt Temporal gave up on while it still runs, and its retry)
// would otherwise write the same .partial file, and the one finishing
// first would verify and complete the other's half-written dump. The
// kernel releases the lock when the process dies; the file stays.
func lock(path string) (release func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the backup lock: %w", err)
	}
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if err == nil {
		return func() { _ = f.Close() }, nil
	}
	_ = f.Close()
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return nil, marked{fmt.Errorf("another attempt is still backing up (it holds %s): "+
			"a retry continues once it has stopped", path), ErrBusy}
	}
	return nil, fmt.Errorf("locking %s: %w", path, err)
}
