package main

import (
	"os"
	"os/exec"
	"syscall"
)

// dieWithParent kills a program under test when the benchmark dies, even
// by SIGKILL, so no worker is left polling a vanished server.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// maxRSS is the peak RSS (KiB) of an ended process and of the children it
// waited for, the larger of them (ru_maxrss).
func maxRSS(ps *os.ProcessState) int64 {
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss
	}
	return 0
}
