package workertest

import "syscall"

// sysProcAttr kills a child process when the test binary dies before its
// cleanup could, such as at a -timeout panic.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
