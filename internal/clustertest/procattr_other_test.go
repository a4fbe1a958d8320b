//go:build cluster && !linux

package clustertest

import "syscall"

// dieWithTest: only Linux can tie a child's life to its parent's.
func dieWithTest() *syscall.SysProcAttr { return nil }
