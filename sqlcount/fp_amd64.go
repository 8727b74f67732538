package sqlcount

import (
	"runtime"
	"strings"
	"sync"
	"unsafe"
)

// getfp returns its caller's frame pointer.
func getfp() unsafe.Pointer

// callers fills pcs with the return program counters of the stack of its
// caller's caller, as runtime.Callers(2, pcs) called from its caller does,
// and returns how many. It follows the frame pointers, which Go keeps on
// amd64, as the runtime's execution tracer does: a few ns a frame, where
// runtime.Callers decodes each function's unwinding tables. It gives
// physical frames only: runtime.CallersFrames expands the inlined ones
// when reporting.
//
// It follows a frame pointer only out of a frame whose return address is
// in Go code other than the runtime's cgo callback entry: C code called
// through cgo (a Go callback of a SQLite hook, say) need not keep frame
// pointers, which is why the tracer does not walk them with cgo on the
// stack. The stack then ends at the callback.
//
//go:noinline
func callers(pcs []uintptr) int {
	fp := getfp() // callers' own frame
	if fp == nil {
		return 0
	}
	fp = *(*unsafe.Pointer)(fp) // its caller's
	n := 0
	for n < len(pcs) && fp != nil {
		pc := *(*uintptr)(unsafe.Add(fp, unsafe.Sizeof(uintptr(0))))
		pcs[n] = pc
		n++
		if !goFrame(pc) {
			break
		}
		fp = *(*unsafe.Pointer)(fp)
	}
	return n
}

// goFrames caches goFrame's verdict by program counter.
var goFrames sync.Map // uintptr -> bool

// goFrame reports whether pc, a return address, is in a Go function whose
// own frame pointer can be followed: not C, not the runtime's cgo
// callback entry, not goexit.
func goFrame(pc uintptr) bool {
	if v, ok := goFrames.Load(pc); ok {
		return v.(bool)
	}
	ok := false
	if f := runtime.FuncForPC(pc - 1); f != nil {
		name := f.Name()
		ok = !strings.HasPrefix(name, "runtime.cgocallback") && name != "runtime.goexit" &&
			!strings.HasPrefix(name, "crosscall") && !strings.HasPrefix(name, "_cgo")
	}
	goFrames.Store(pc, ok)
	return ok
}
