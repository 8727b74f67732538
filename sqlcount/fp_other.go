//go:build !amd64

package sqlcount

import "runtime"

// callers fills pcs with the return program counters of the stack of its
// caller's caller, as runtime.Callers(2, pcs) called from its caller does,
// and returns how many.
//
//go:noinline
func callers(pcs []uintptr) int { return runtime.Callers(3, pcs) }
