package sqlcount

import (
	"runtime"
	"slices"
	"testing"
)

// functions returns the function of each frame of pcs, inlined ones
// expanded.
func functions(pcs []uintptr) []string {
	var out []string
	frames := runtime.CallersFrames(pcs)
	for {
		f, more := frames.Next()
		out = append(out, f.Function)
		if !more {
			return out
		}
	}
}

// stacks returns the stack of its caller's caller by callers and by
// runtime.Callers.
//
//go:noinline
func stacks() (own, runtimes []uintptr) {
	own = make([]uintptr, maxDepth)
	own = own[:callers(own)]
	runtimes = make([]uintptr, maxDepth)
	runtimes = runtimes[:runtime.Callers(2, runtimes)]
	return own, runtimes
}

// Ensure callers gives the frames runtime.Callers gives, once expanded,
// from a stack that has inlined calls and a closure, up to the goroutine's
// start.
func TestCallers(t *testing.T) {
	var own, runtimes []uintptr
	func() { deep(5, func() { own, runtimes = stacks() }) }()
	got, want := functions(own), functions(runtimes)
	// runtime.Callers leaves out the wrapper of a go statement.
	got = slices.DeleteFunc(got, func(f string) bool { return f == "testing.(*T).Run.gowrap1" })
	if !slices.Equal(got, want) {
		t.Errorf("callers:\ngot  %q\nwant %q", got, want)
	}
	if len(want) < 8 {
		t.Errorf("runtime.Callers: got %d frames, want the test's 8 or more", len(want))
	}
}
