//go:build unix

package homeserver

import (
	"os/exec"
	"syscall"
)

// ownGroup runs cmd in a process group of its own and makes a timeout or
// a cancelled attempt kill the whole group: a shell's children (`docker
// compose up`, the operator's script) must not outlive the step and run
// alongside its retry.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
