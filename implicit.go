package contextvars

// This file holds what decides whether a Set outside any Run may make an
// implicit context: the ForbidImplicit switch for test suites, and the cgo
// rule (goroutineid.go tells a cgo callback's goroutine).

import (
	"sync/atomic"
)

// forbidImplicit is ForbidImplicit's switch.
var forbidImplicit atomic.Bool

// ForbidImplicit turns on or off a check, for test suites, that every
// [Var.Set] runs inside some [Context.Run] (or [Call], or a goroutine
// started by [Go]). While it is on, a Set outside any Run, which would make
// the goroutine's implicit context, panics with an error that names the var
// and wraps [ErrOutsideRun], instead of setting the value. It returns the
// previous setting, so that a test can restore it:
//
//	defer contextvars.ForbidImplicit(contextvars.ForbidImplicit(true))
//
// A Set outside Run on a server's connection goroutine is the pattern that
// leaks a request's values into the next request on a keep-alive connection;
// ForbidImplicit makes a test suite catch it. It affects the whole process,
// and Sets that find an implicit context already made are not checked.
func ForbidImplicit(on bool) (previous bool) {
	return forbidImplicit.Swap(on)
}

// errOutsideRun returns the error a Set of the var named name panics with
// outside any Run, wrapping ErrOutsideRun; why says why no implicit context
// may be made.
func errOutsideRun(name, why string) error {
	return &cvError{ErrOutsideRun, "contextvars: Set of " + varRepr(name) + " outside any Run: " + why}
}
