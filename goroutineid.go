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
// (live goroutines have distinct ids). The runtime never reuses a goroutine
// id within a process, which registry.go relies on; pprof labels are untouched.

import "github.com/petermattis/goid"

// goroutineID returns the calling goroutine's id.
func goroutineID() uint64 { return uint64(goid.Get()) }
