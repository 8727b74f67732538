//go:build !linux

package target

import "syscall"

// sysProcAttr puts the target in its own process group.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
