//go:build cluster

package clustertest

import "syscall"

// dieWithTest kills a child with the test binary (a timed-out test must
// not leave a Temporal server or a worker running).
func dieWithTest() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
