package contextvars

// This file holds ReadStats: the registry's and the sweeps' counts, for
// operators to read and export.

import "time"

// Stats are counts of what the package keeps for goroutines, as
// [ReadStats] returns them. A Run per request and [Go] leave nothing behind,
// so in a server that uses them Goroutines counts the requests in flight
// and Implicit stays near zero; a growing Implicit means code that sets vars
// outside any Run (see [ForbidImplicit]).
type Stats struct {
	// Goroutines is the number of goroutine states in use: goroutines
	// inside a Run (or Call) and goroutines holding an implicit context.
	Goroutines int
	// Implicit is the number of implicit contexts held, those of exited
	// goroutines included until a sweep drops them.
	Implicit int
	// Overflow is how many of the Goroutines are neither in their
	// registry bucket's slot nor first in its chain (or a sub-bucket's),
	// so that their lookups walk a chain: few while fewer than a few
	// thousand goroutines use the package at once, and chains stay short
	// beyond (registry.go).
	Overflow int
	// Retained is the number of free goroutine states kept for reuse
	// outside the registry's fixed memory: always 0, as a free keeps a
	// state only in its bucket's slot, a part of the registry (1 MiB in
	// all, see the README's "The registry").
	//
	// Deprecated: the registry keeps no free state on the heap; Retained
	// is always 0, and stays so that code reading it still compiles.
	Retained int

	// Sweeps is the number of sweeps done since the process started, and
	// Dropped the number of implicit contexts of exited goroutines they
	// dropped.
	Sweeps, Dropped uint64
	// SweepPauseTotal and SweepPauseMax are the total and the longest
	// time the sweeps' listings of goroutines stopped the world.
	SweepPauseTotal, SweepPauseMax time.Duration
}

// ReadStats returns the package's counts. It takes a time that grows with
// the goroutines in the package, and no lock that Get, Set or Run takes; it
// does not wait for a sweep in progress (whose counts it leaves out).
func ReadStats() Stats {
	var s Stats
	reg.eachState(func(_ *gstate, owner uint64, overflow bool) {
		s.Goroutines++
		if owner&ownerImplicit != 0 {
			s.Implicit++
		}
		if overflow {
			s.Overflow++
		}
	})
	reg.statsMu.Lock() // not sweepMu: a sweep may hold that for seconds
	s.Sweeps, s.Dropped = reg.sweeps, reg.dropped
	s.SweepPauseTotal, s.SweepPauseMax = reg.tracebackTotal, reg.tracebackMax
	reg.statsMu.Unlock()
	return s
}
