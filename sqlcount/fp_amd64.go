package sqlcount

import "unsafe"

// getfp returns its caller's frame pointer.
func getfp() unsafe.Pointer

// callers fills pcs with the return program counters of the stack of its
// caller's caller, as runtime.Callers(2, pcs) called from its caller does,
// and returns how many. It follows the frame pointers, which Go keeps on
// amd64, as the runtime's execution tracer does: a few ns a frame, where
// runtime.Callers decodes each function's unwinding tables, which costs
// more than the rest of a record. It gives physical frames only:
// runtime.CallersFrames expands the inlined ones when reporting.
//
//go:noinline
//go:nosplit
func callers(pcs []uintptr) int {
	fp := getfp() // callers' own frame
	if fp == nil {
		return 0
	}
	fp = *(*unsafe.Pointer)(fp) // its caller's
	n := 0
	for n < len(pcs) && fp != nil {
		pcs[n] = *(*uintptr)(unsafe.Add(fp, unsafe.Sizeof(uintptr(0))))
		fp = *(*unsafe.Pointer)(fp)
		n++
	}
	return n
}
