package contextvars

// This file holds sweeps, which drop the implicit contexts of goroutines
// that have exited. Go has no hook that runs when a goroutine exits, so a
// sweep lists the live goroutines with one runtime.Stack(buf, true) and drops
// the implicit entries whose goroutines the listing lacks.
//
// Invariant: a sweep drops only entries of goroutines that have exited. It
// takes its candidates before the listing, so each was made before it; a
// goroutine alive then and missing from the listing has exited, and the
// runtime never reuses a goroutine id. Only a sweep drops an implicit entry,
// under its shard's mutex. (The runtime lists the goroutine that runs
// finalizers only while it runs one, so an implicit context made by a
// finalizer may be dropped between two of them; inside Run nothing is.)
//
// Invariant: a sweep pays for itself. It stops the world for a time that
// grows with the number of goroutines G, so it runs only when the implicit
// entries number at least max(minSweep, 2G): at least half of them are dead,
// and the traceback of G goroutines is paid for by at least G exits.
// Goroutines that make implicit contexts check the rule when the entries
// reach sweepAt (max(minSweep, 2 × the entries the last sweep kept, 2G at the
// last check)), and wait for a sweep under way, so they cannot outrun it.
// While minSweep entries exist, a timer (time.AfterFunc: no goroutine of ours
// waits) checks again, so that entries of exited goroutines are reclaimed
// even if no goroutine makes an implicit context after them.

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"time"
)

const (
	// minSweep is the fewest implicit entries that make a sweep due (C in
	// the rule of the file comment). It is small because the rest of the
	// rule, not this constant, keeps sweeps from costing more than they
	// free.
	minSweep = 32

	// sweepMinPeriod and sweepMaxPeriod bound the timer that checks again
	// whether a sweep is due; the period doubles from one to the other
	// while no sweep is.
	sweepMinPeriod = 50 * time.Millisecond
	sweepMaxPeriod = time.Second

	// minDump is the smallest buffer for a sweep's traceback.
	minDump = 256 << 10
)

// sweeper is the registry's sweep state.
type sweeper struct {
	sweepMu    sync.Mutex // held by a sweep or a check for one; protects the following
	kept       int64      // implicit entries kept by the last sweep
	dumpPerG   int        // bytes per goroutine of the last sweep's traceback
	dumpMin    int        // the next traceback's buffer is at least this big
	period     time.Duration
	timerArmed bool
	sweeps     int // sweeps done, for tests

	// The time the sweeps' tracebacks took, the world stopped: for the
	// scale test.
	tracebackMax, tracebackTotal time.Duration
}

// maybeSweep sweeps if a sweep is due by the rule of the file comment, and
// arms the timer if one may become due as goroutines exit. If a sweep is
// under way, it waits for it and checks again, so that goroutines making
// implicit contexts cannot outrun the sweep that reclaims them.
func (r *registry) maybeSweep() {
	r.sweepMu.Lock()
	defer r.sweepMu.Unlock()
	if r.implicit.Load() >= r.sweepAt.Load() {
		r.checkLocked()
	}
}

// checkLocked is maybeSweep with r.sweepMu held.
func (r *registry) checkLocked() {
	n := r.implicit.Load()
	if n >= minSweep {
		g := int64(runtime.NumGoroutine())
		if n >= 2*g {
			if r.sweepLocked() {
				r.period = 0
			}
			n = r.implicit.Load()
		} else {
			r.sweepAt.Store(max(minSweep, 2*r.kept, 2*g))
		}
	}
	if n >= minSweep && !r.timerArmed {
		// Entries enough to sweep for, once their goroutines exit.
		r.period = min(max(2*r.period, sweepMinPeriod), sweepMaxPeriod)
		r.timerArmed = true
		time.AfterFunc(r.period, r.onTimer)
	}
}

// onTimer is the sweep timer's function.
func (r *registry) onTimer() {
	r.sweepMu.Lock()
	defer r.sweepMu.Unlock()
	r.timerArmed = false
	r.checkLocked()
}

// sweepLocked drops the implicit entries of goroutines that have exited and
// reports whether its traceback fit; see the file comment. r.sweepMu must be
// held.
func (r *registry) sweepLocked() bool {
	// The candidates, taken before the listing.
	cands := make(map[uint64]struct{})
	r.eachOwner(func(owner uint64) {
		if owner&ownerImplicit != 0 {
			cands[owner&ownerIDMask] = struct{}{}
		}
	})
	if len(cands) == 0 {
		return true
	}
	if !r.listLive(cands) {
		return false
	}
	// cands now holds the dead: rebuild the shards they are in.
	var withDead [numShards]bool
	for id := range cands {
		withDead[shardOf(idHash(id))] = true
	}
	var dropped int
	for i := range r.shards {
		if !withDead[i] {
			continue
		}
		s := &r.shards[i]
		s.mu.Lock()
		dropped += s.rebuildLocked(func(gs *gstate, o uint64) bool {
			_, dead := cands[o&ownerIDMask]
			return dead && o&ownerImplicit != 0
		})
		s.mu.Unlock()
	}
	r.kept = r.implicit.Add(-int64(dropped))
	r.sweepAt.Store(max(minSweep, 2*r.kept))
	r.sweeps++
	return true
}

// listLive takes one traceback of all goroutines and deletes the ids of
// those alive from ids. It reports false, deleting nothing, if the traceback
// did not fit its buffer; the next one gets a bigger buffer.
func (r *registry) listLive(ids map[uint64]struct{}) bool {
	g := runtime.NumGoroutine()
	perG := r.dumpPerG
	if perG == 0 {
		perG = 1 << 10
	}
	// Room for twice as many goroutines as are alive now, each with the
	// last traceback's bytes per goroutine, and for half as much again as
	// the last traceback: goroutines come and go, and their stacks deepen.
	// A few hundred goroutines' tracebacks vary too much for either, and
	// fit in minDump.
	buf := make([]byte, max(minDump, r.dumpMin, (2*g+64)*perG))
	start := time.Now()
	n := runtime.Stack(buf, true)
	d := time.Since(start)
	r.tracebackMax, r.tracebackTotal = max(r.tracebackMax, d), r.tracebackTotal+d
	if n == len(buf) {
		r.dumpMin = 2 * len(buf)
		return false
	}
	r.dumpPerG = n/max(g, 1) + 1
	r.dumpMin = n + n/2
	prefix := []byte("goroutine ")
	for line := range bytes.Lines(buf[:n]) {
		if !bytes.HasPrefix(line, prefix) {
			continue
		}
		digits := line[len(prefix):]
		end := 0
		for end < len(digits) && '0' <= digits[end] && digits[end] <= '9' {
			end++
		}
		if id, err := strconv.ParseUint(string(digits[:end]), 10, 64); err == nil {
			delete(ids, id)
		}
	}
	return true
}
