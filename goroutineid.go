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
// runtime.Stack. outermostStart tells such a goroutine by its outermost
// frame (runtime.Callers is public API); the cgo test in internal/cgotest
// checks it. The goroutines on which the runtime runs finalizers and
// cleanups are absent from runtime.Stack while idle too, and outermostStart
// tells them the same way.

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/petermattis/goid"
)

// goroutineID returns the calling goroutine's id.
func goroutineID() uint64 { return uint64(goid.Get()) }

// A goroutineStart classifies a goroutine by the function that starts its
// stack (the frame just above runtime.goexit), as outermostStart reads it.
type goroutineStart uint8

const (
	// startGo: a goroutine started by a go statement, or the main one.
	startGo goroutineStart = iota

	// startCgoCallback: the goroutine of a C thread's callback into Go,
	// which the runtime reuses for other threads. Its stack starts with
	// runtime.cgocallback; between callbacks it is absent from
	// runtime.Stack. (A callback from C code that a Go goroutine called
	// runs on that goroutine, whose stack starts with Go frames: it is
	// not one of these.)
	startCgoCallback

	// startHidden: a goroutine of the runtime's that runs user code, the
	// finalizer goroutine or one of the cleanup goroutines. runtime.Stack
	// lists it only while it runs a finalizer or cleanup, so a sweep
	// must not take its absence for an exit (sweeper.pinned). It never
	// exits.
	startHidden
)

// startNames are the starting functions of startCgoCallback and startHidden
// goroutines, by name (runtime.runfinq is the finalizer goroutine's before
// Go 1.25).
var startNames = map[string]goroutineStart{
	"runtime.cgocallback":   startCgoCallback,
	"runtime.runFinalizers": startHidden,
	"runtime.runfinq":       startHidden,
	"runtime.runCleanups":   startHidden,
}

// startOf returns how the calling goroutine, whose id is id, started:
// outermostStart, walked once per ordinary goroutine (see ordinary).
func startOf(id uint64) goroutineStart {
	slot := &ordinary[id%uint64(len(ordinary))]
	if slot.Load() == id {
		return startGo
	}
	k := outermostStart()
	if k == startGo {
		slot.Store(id)
	}
	return k
}

// ordinary remembers goroutines that outermostStart found to be startGo, by
// id, one in each slot of a small direct-mapped table, so that a goroutine
// that makes implicit contexts again and again (a pool's worker that drops
// its implicit context after each task) walks its stack once. The runtime
// never reuses the id of a goroutine started by a go statement, so a hit
// is exact; the goroutines it does reuse (cgo callbacks) are never entered.
var ordinary [256]atomic.Uint64

// outermostStart returns how the calling goroutine started. It walks the
// stack (about 300 ns for a shallow one, more for a deep one), so it is for
// slow paths only: newImplicit, through startOf.
func outermostStart() goroutineStart {
	// The buffer comes from a pool, not the stack: 512 bytes of frame
	// made every goroutine that sets a var outside Run grow its stack
	// from 2 to 4 KiB (the scale review: 196 MiB more at 100,000).
	bp := pcsPool.Get().(*[]uintptr)
	defer pcsPool.Put(bp)
	pcs := *bp
	for {
		n := runtime.Callers(0, pcs)
		if n < len(pcs) {
			pcs = pcs[:n]
			break
		}
		pcs = make([]uintptr, 2*len(pcs))
		*bp = pcs
	}
	if len(pcs) < 2 {
		return startGo
	}
	f := runtime.FuncForPC(pcs[len(pcs)-2] - 1)
	if f == nil {
		return startGo
	}
	// Names cost more than the walk: remember each outermost function's.
	entry := f.Entry()
	if v, ok := outermost.Load(entry); ok {
		return v.(goroutineStart)
	}
	k := startNames[f.Name()] // startGo if not named
	outermost.Store(entry, k)
	return k
}

// pcsPool holds the buffers outermostStart walks stacks into.
var pcsPool = sync.Pool{New: func() any { b := make([]uintptr, 64); return &b }}

// outermost caches, by function entry, the goroutineStart of goroutines
// whose stacks start with that function. It holds one entry per function
// that starts goroutines which make implicit contexts: a bounded number.
var outermost sync.Map
