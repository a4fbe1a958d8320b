//go:build !linux

package main

import (
	"os"
	"os/exec"
)

func dieWithParent(*exec.Cmd) {}

// maxRSS is unknown outside Linux (ru_maxrss has other units or is absent).
func maxRSS(*os.ProcessState) int64 { return 0 }
