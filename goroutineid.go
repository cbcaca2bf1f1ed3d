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
	"runtime/debug"
	"sync"

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
// Go frames: it is not one of these.)
//
// It walks the stack, about a microsecond, so it is for slow paths only, and
// it answers at once in a process where no C thread can have called into Go:
// one built as a program (not a C library) that has made no cgo call since
// this package's init. (A C constructor that starts threads which call into
// Go later would escape this; C code does not run otherwise.)
func onCgoCallback() bool {
	if !cgoLibrary && runtime.NumCgoCall() == cgoCallsAtInit {
		return false
	}
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
	if f == nil {
		return false
	}
	// Names cost more than the walk: remember each outermost function's.
	entry := f.Entry()
	if v, ok := outermost.Load(entry); ok {
		return v.(bool)
	}
	cgo := f.Name() == "runtime.cgocallback"
	outermost.Store(entry, cgo)
	return cgo
}

// outermost caches, by function entry, whether the function that starts a
// goroutine's stack is runtime.cgocallback. It holds one entry per function
// that starts goroutines which make implicit contexts: a bounded number.
var outermost sync.Map

// cgoCallsAtInit is runtime.NumCgoCall when the package was initialized:
// the runtime makes a cgo call of its own at start-up where cgo is linked.
var cgoCallsAtInit = runtime.NumCgoCall()

// cgoLibrary reports that the program is built as a C library (buildmode
// c-shared or c-archive), whose C callers may call into Go on threads of
// their own without Go ever calling C.
var cgoLibrary = func() bool {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return true // unknown: check always
	}
	for _, s := range info.Settings {
		if s.Key == "-buildmode" {
			return s.Value == "c-shared" || s.Value == "c-archive"
		}
	}
	return false
}()
