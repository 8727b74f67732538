package sqlcount

import "runtime"

// callers fills pcs with the return program counters of the stack of its
// caller's caller, as runtime.Callers(2, pcs) called from its caller does,
// and returns how many. It records program counters only: symbolising
// (runtime.CallersFrames) waits until an origin is reported.
//
// runtime.Callers, not a walk of the frame pointers: an earlier version
// followed them in assembly on amd64, a few hundred nanoseconds faster per
// open, at the price of reading the stack by hand (and of stopping at cgo
// callbacks, whose C frames keep no frame pointers). The difference shows
// only when a handle is opened per call, the leak itself; the runtime's
// own unwinder is the one to trust in a process that must not crash.
//
//go:noinline
func callers(pcs []uintptr) int { return runtime.Callers(3, pcs) }
