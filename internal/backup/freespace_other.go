//go:build !(linux || darwin || freebsd)

package backup

import (
	"fmt"
	"runtime"
)

// freeSpace cannot be measured here: the backup refuses rather than risk
// filling the disk.
func freeSpace(string) (uint64, error) {
	return 0, fmt.Errorf("measuring free space is not supported on %s: run the worker taking backups on Linux", runtime.GOOS)
}
