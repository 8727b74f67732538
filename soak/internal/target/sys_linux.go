package target

import "syscall"

// sysProcAttr makes the kernel SIGTERM the target if the harness dies, so
// that a killed CI job leaves no worker behind, and puts it in its own
// process group, so that a Ctrl-C aimed at the harness does not stop the
// target before the harness can report on it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
}
