package contextvars

// This file is the package's only source of goroutine identity.
//
// It depends on github.com/petermattis/goid, whose Get reads the running
// goroutine's id (the runtime's g.goid, the number that panics and
// runtime.Stack print) with a few instructions of assembly and a per-release
// table of the field's offset. We read no runtime structure ourselves and use
// no go:linkname.
//
// What breaks if the runtime changes: a Go release that moves g.goid would
// make goid.Get return a wrong number until the library is updated. Two tests
// would catch it: TestGoroutineID_matchesStack (our id equals the one
// runtime.Stack prints, on many goroutines) and TestGoroutineID_distinct
// (live goroutines have distinct ids). pprof labels are untouched.
//
// The runtime never reuses the id of a goroutine started by a go statement.
// It does reuse the goroutine on which it runs the callbacks of a C thread
// into Go (cgo): that goroutine belongs to an extra M that the runtime keeps
// in a pool, so threads that call into Go one after another run on one
// goroutine id, and between callbacks the goroutine is absent from
// runtime.Stack. onCgoCallback tells such a goroutine by its outermost frame
// (runtime.Callers is public API); the cgo test in internal/cgotest checks it.

import (
	"runtime"

	"github.com/petermattis/goid"
)

// goroutineID returns the calling goroutine's id.
func goroutineID() uint64 { return uint64(goid.Get()) }

// onCgoCallback reports whether the calling goroutine is the goroutine of a
// C thread's callback into Go, which the runtime reuses for other threads.
// Such a goroutine's stack starts with runtime.cgocallback just above
// runtime.goexit; a goroutine started by a go statement starts with its
// function, the main goroutine with runtime.main. (A callback from C code
// that a Go goroutine called runs on that goroutine, whose stack starts with
// Go frames: it is not one of these.) It walks the whole stack, so it is for
// slow paths only.
func onCgoCallback() bool {
	pcs := make([]uintptr, 64)
	for {
		n := runtime.Callers(0, pcs)
		if n < len(pcs) {
			pcs = pcs[:n]
			break
		}
		pcs = make([]uintptr, 2*len(pcs))
	}
	if len(pcs) < 2 {
		return false
	}
	f := runtime.FuncForPC(pcs[len(pcs)-2] - 1)
	return f != nil && f.Name() == "runtime.cgocallback"
}
