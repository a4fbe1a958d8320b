package devserver

import (
	"os/exec"
	"syscall"
)

// dieWithParent kills the dev server when the starter dies, even by
// SIGKILL, so a re-run can open the same SQLite file.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
