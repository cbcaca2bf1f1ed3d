package contextvars

// This file holds sweeps, which drop the implicit contexts of goroutines
// that have exited. Go has no hook that runs when a goroutine exits, so a
// sweep lists the live goroutines with one runtime.Stack(buf, true) and drops
// the implicit entries whose goroutines the listing lacks.
//
// Invariant: a sweep drops only entries of goroutines that have exited. It
// takes its candidates before the listing, so each was made before it; a
// goroutine alive then and missing from the listing has exited, and the
// runtime never reuses the id of a goroutine that held an implicit context.
// (It does reuse the goroutine that runs the callbacks of a C thread, which
// vanishes from listings between callbacks; such a goroutine never holds an
// implicit context: see Var.Set and goroutineid.go.) A sweep unlinks a dead
// goroutine's state (registry.drop) and writes nothing of it. Sweeps are
// serialized by sweepMu. (The runtime lists the goroutines that run
// finalizers and cleanups only while they run one, and they never exit: a
// state one of them claimed for an implicit context is pinned, and no sweep
// takes it for dead; see sweeper.pinned.)
//
// Invariant: a sweep pays for itself, by count and by time.
//   - By count: it runs only when the implicit entries number at least
//     max(minSweep, 2G), G the goroutines alive, so that at least half of
//     what it examines is dead and its traceback of G goroutines is paid for
//     by at least G exits; and only when some goroutine has exited since the
//     last sweep (runtime/metrics counts goroutines created and alive).
//     Except when a sweep is cheap: if its pause, estimated from the last
//     traceback's pause per goroutine, is at most cheapPause, the timer
//     sweeps while any entry exists (once some goroutine has exited since
//     the last sweep), so that in a process of about a thousand goroutines
//     or fewer an exited goroutine's values are reclaimed within about a
//     second, however few and however large. Above that, entries wait for
//     the count rule: up to 2G of them, of exited goroutines, may be held
//     while G goroutines stay alive.
//   - By time: the traceback stops the world, so a sweep starts only when
//     the time since the last one ended is at least sweepPace times the last
//     one's pause. Sweep pauses then take at most 1/(sweepPace+1) of the wall
//     time, under any churn, as the runtime paces its scavenger.
// So the implicit entries stay within 2 × the peak of goroutines alive, plus
// minSweep, plus the implicit contexts made within one pacing interval.
//
// Goroutines that make implicit contexts check the count rule when the
// entries reach sweepAt, and never wait: if a sweep or check is under way,
// they go on, and a sweep they find due is left to the timer, armed to fire
// at once, whose goroutine sweeps (outside a synctest bubble, where no
// timer may be armed, the goroutine sweeps itself). While minSweep entries
// exist, or any while a sweep is cheap, a timer (time.AfterFunc: no
// goroutine of ours waits) checks again, so that entries of exited
// goroutines are reclaimed even if no goroutine makes an implicit context
// after them.
//
// testing/synctest: inside a bubble, time is fake and a timer armed there
// belongs to the bubble (it would keep a deadlocked bubble from being
// reported, and never fire after the bubble ends). So a goroutine in a bubble
// never arms the timer and never paces by the bubble's clock: it sweeps by
// the count rule alone, and where the timer is wanted it registers a cleanup
// (runtime.AddCleanup) that checks again after the next collection, from the
// runtime's goroutine, outside any bubble.

import (
	"bytes"
	"runtime"
	"runtime/metrics"
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

	// sweepPace is the least ratio of the time between sweeps to the last
	// sweep's pause: 9, so that sweep pauses take at most 10% of the wall
	// time.
	sweepPace = 9

	// sweepMinPeriod and sweepMaxPeriod bound the timer that checks again
	// whether a sweep is due; the period doubles from one to the other
	// while no sweep is.
	sweepMinPeriod = 50 * time.Millisecond
	sweepMaxPeriod = time.Second

	// minDump is the smallest buffer for a sweep's traceback.
	minDump = 256 << 10

	// cheapPause is the longest estimated pause of a sweep the timer
	// makes for fewer entries than the count rule asks (see the file
	// comment), and pausePerG the estimate per goroutine before any
	// sweep (3-4 µs were measured on a 2-core AMD EPYC). The timer
	// checks at most once a second while entries exist, and sweeps only
	// if a goroutine has exited since the last sweep: at most 0.5% of
	// the wall time, and far less in a process of fewer goroutines.
	cheapPause = 5 * time.Millisecond
	pausePerG  = 4 * time.Microsecond
)

// sweeper is the registry's sweep state.
type sweeper struct {
	sweepMu    sync.Mutex // held by a sweep or a check for one; protects the following
	kept       int64      // implicit entries kept by the last sweep
	dumpPerG   int        // bytes per goroutine of the last sweep's traceback
	dumpMin    int        // the next traceback's buffer is at least this big
	period     time.Duration
	timerArmed bool
	timer      *time.Timer // the timer armed last

	// wakeupPending: a bubble's goroutine asked the garbage collector
	// to check again from outside the bubble (see checkLocked).
	wakeupPending bool

	// lastEnd is when the last sweep outside a bubble ended, lastPause its
	// traceback's pause; exited is the goroutines that had exited when it
	// began (runtime/metrics).
	lastEnd   time.Time
	lastPause time.Duration
	lastG     int // goroutines listed by the last traceback
	exited    uint64

	// pinned holds the ids of the goroutines that made implicit contexts
	// while running a finalizer or a cleanup (startHidden): runtime.Stack
	// leaves them out while idle, but they never exit, so no sweep drops
	// their states. There are at most a few (the finalizer goroutine and
	// the cleanup goroutines); an id stays pinned for good.
	pinMu  sync.Mutex
	pinned map[uint64]bool

	// Counts for ReadStats, written with both sweepMu and statsMu held
	// and read with either, so that ReadStats need not wait for a sweep.
	statsMu                      sync.Mutex
	sweeps                       uint64
	dropped                      uint64
	tracebackMax, tracebackTotal time.Duration

	// sweepMax is the longest time a sweep took from listing its
	// candidates to its last drop (for the scale test's bound: entries
	// made meanwhile wait for the next sweep).
	sweepMax time.Duration
}

// maybeSweep checks whether a sweep is due and sweeps if so; see the file
// comment. If a sweep or a check is under way, it returns at once.
func (r *registry) maybeSweep() {
	if !r.sweepMu.TryLock() {
		return
	}
	defer r.sweepMu.Unlock()
	if r.implicit.Load() >= r.sweepAt.Load() {
		bubbled := inBubble()
		r.checkLocked(bubbled, bubbled)
	}
}

// checkLocked sweeps if a sweep is due, and arms the timer if one may
// become due as goroutines exit or as the pacing interval passes.
// bubbled reports that the calling goroutine is in a synctest bubble.
// inline reports that the caller may sweep itself: the timer's goroutine,
// or a bubble's goroutine, which may arm no timer. Else a due sweep is
// left to the timer, armed to fire at once: the goroutine whose Set found
// it due goes on (it may hold locks of its own, and a sweep at 100,000
// goroutines takes a second). r.sweepMu must be held.
func (r *registry) checkLocked(bubbled, inline bool) {
	n := r.implicit.Load()
	g := int64(runtime.NumGoroutine())
	// small: a sweep is cheap here (see the file comment). cheap: the
	// timer may sweep though the entries are fewer than the count rule
	// asks. Not only for entries made since the last sweep: one it kept
	// may have exited since (a worker pool that shut down). In a bubble
	// too (cheap reads only the last sweep's figures, not the clock), so
	// that a bubble's few entries get a wakeup; but a bubble's goroutine
	// sweeps inline only by the count rule.
	small := r.cheap(g)
	cheap := small && n > 0
	if n < minSweep && !cheap {
		return
	}
	wait := time.Duration(0) // until pacing allows a sweep
	exited, known := exitedGoroutines()
	switch {
	case n < 2*g && !(cheap && inline && !bubbled):
		if cheap {
			// Each new entry checks, arming the timer if need be.
			r.sweepAt.Store(r.kept + 1)
		} else {
			r.sweepAt.Store(max(minSweep, 2*r.kept, 2*g))
		}
	case known && exited == r.exited:
		// No goroutine has exited since the last sweep: none of its
		// entries can be dropped. Check again when the entries have
		// doubled, or when the timer fires.
		r.sweepAt.Store(2 * n)
	case !bubbled && r.paced(time.Now(), &wait):
		// Too soon after the last sweep: check again a few entries on,
		// by when pacing may allow one, and when the timer fires.
		r.sweepAt.Store(n + minSweep)
	case !inline:
		r.armTimer(0)
		return
	default:
		if r.sweepLocked(bubbled) {
			r.exited, r.period = exited, 0
			if n < max(minSweep, 2*g) {
				// A cheap sweep, not one the count rule asked for:
				// the timer checks again in a second, not at once
				// (else a live implicit context and any churn of
				// goroutines would make it sweep every 50 ms).
				r.period = sweepMaxPeriod
			}
		}
		n = r.implicit.Load()
		small = r.cheap(g) // by the pause just measured
		if small {
			r.sweepAt.Store(min(r.sweepAt.Load(), r.kept+1))
		}
	}
	switch {
	case r.timerArmed || n == 0 || n < minSweep && !small:
	case !bubbled:
		// Entries enough to sweep for, once their goroutines exit or
		// pacing allows.
		r.period = min(max(2*r.period, sweepMinPeriod), sweepMaxPeriod)
		r.armTimer(max(r.period, wait))
	case !r.wakeupPending:
		// In a bubble no timer may be armed; ask the garbage collector
		// instead: a cleanup runs on the runtime's goroutine, outside
		// any bubble, after the next collection, and checks from there
		// (arming the timer). Entries enough to sweep for hold memory,
		// so a collection comes.
		r.wakeupPending = true
		runtime.AddCleanup(&wakeup{}, func(r *registry) { r.onWakeup() }, r)
	}
}

// armTimer arms the sweep timer to fire after d, unless it is armed
// already; a d of 0 (a sweep is due) brings an armed timer forward.
// r.sweepMu must be held.
func (r *registry) armTimer(d time.Duration) {
	if r.timerArmed && (d > 0 || !r.timer.Stop()) {
		return // armed; or fired, and its check is waiting for sweepMu
	}
	r.timerArmed = true
	r.timer = time.AfterFunc(d, r.onTimer)
}

// wakeup is the object whose cleanup checks, outside any bubble, for a
// sweep a bubble's goroutine could not arm the timer for. It holds a
// pointer so that it is not one of the allocator's tiny objects, whose
// cleanups may never run.
type wakeup struct{ _ *byte }

// onWakeup is the cleanup of a wakeup.
func (r *registry) onWakeup() {
	r.sweepMu.Lock()
	defer r.sweepMu.Unlock()
	r.wakeupPending = false
	bubbled := inBubble()
	r.checkLocked(bubbled, bubbled)
}

// cheap reports whether a sweep of g goroutines is estimated to pause for
// at most cheapPause: by the last traceback's pause per goroutine, or
// pausePerG before any of minMeasuredG goroutines or more.
func (r *sweeper) cheap(g int64) bool {
	per := pausePerG
	if r.lastG >= minMeasuredG {
		per = r.lastPause / time.Duration(r.lastG)
	}
	return per*time.Duration(g) <= cheapPause
}

// minMeasuredG is the fewest goroutines whose traceback's pause per
// goroutine cheap trusts: below it the pause is mostly the fixed cost of
// stopping the world (about 60 µs per goroutine at 3), and an estimate from
// it would keep every later sweep from counting as cheap, and hold the
// entries of exited goroutines until the count rule.
const minMeasuredG = 256

// paced reports whether pacing forbids a sweep at now, and if so sets *wait
// to the time until it allows one.
func (r *sweeper) paced(now time.Time, wait *time.Duration) bool {
	if r.lastEnd.IsZero() {
		return false
	}
	next := r.lastEnd.Add(sweepPace * r.lastPause)
	if now.Before(next) {
		*wait = next.Sub(now)
		return true
	}
	return false
}

// onTimer is the sweep timer's function. It runs on a goroutine of its own,
// outside any bubble.
func (r *registry) onTimer() {
	r.sweepMu.Lock()
	defer r.sweepMu.Unlock()
	r.timerArmed = false
	r.checkLocked(false, true)
}

// sweepLocked drops the implicit entries of goroutines that have exited and
// reports whether its traceback fit; see the file comment. r.sweepMu must be
// held. bubbled reports that the calling goroutine is in a synctest bubble,
// where the clock does not measure the pause.
func (r *registry) sweepLocked(bubbled bool) bool {
	began := time.Now()
	// The candidates, taken before the listing.
	cands := make(map[uint64]*gstate)
	owners := make(map[*gstate]uint64)
	r.eachState(func(gs *gstate, owner uint64, _ bool) {
		if owner&ownerImplicit != 0 {
			cands[owner&ownerIDMask] = gs
			owners[gs] = owner
		}
	})
	if len(cands) == 0 {
		return true
	}
	start := time.Now()
	fit := r.listLive(cands)
	pause := time.Since(start)
	if !bubbled {
		r.lastEnd, r.lastPause, r.lastG = time.Now(), pause, runtime.NumGoroutine()
		r.statsMu.Lock()
		r.tracebackMax, r.tracebackTotal = max(r.tracebackMax, pause), r.tracebackTotal+pause
		r.statsMu.Unlock()
	}
	if !fit {
		return false
	}
	if sweepListed != nil {
		sweepListed(cands)
	}
	r.pinMu.Lock()
	for id := range r.pinned {
		delete(cands, id) // alive, though not listed: see sweeper.pinned
	}
	r.pinMu.Unlock()
	// cands now holds the dead.
	var dropped int64
	for _, gs := range cands {
		if r.drop(gs, owners[gs]) {
			dropped++
		}
	}
	r.kept = r.implicit.Load()
	r.sweepAt.Store(max(minSweep, 2*r.kept))
	r.statsMu.Lock()
	r.sweeps++
	r.dropped += uint64(dropped)
	r.statsMu.Unlock()
	if !bubbled {
		r.sweepMax = max(r.sweepMax, time.Since(began))
	}
	return true
}

// listLive takes one traceback of all goroutines and deletes the ids of
// those alive from ids. It reports false, deleting nothing, if the traceback
// did not fit its buffer; the next one gets a bigger buffer.
func (r *registry) listLive(ids map[uint64]*gstate) bool {
	g := runtime.NumGoroutine()
	perG := r.dumpPerG
	if perG == 0 {
		// A goroutine blocked in a few frames takes about 200 bytes;
		// 1 KiB made a first sweep at 100,000 goroutines allocate
		// 205 MB (the scale review).
		perG = 256
	}
	// Room for twice as many goroutines as are alive now, each with the
	// last traceback's bytes per goroutine, and for half as much again as
	// the last traceback: goroutines come and go, and their stacks deepen.
	// A few hundred goroutines' tracebacks vary too much for either, and
	// fit in minDump.
	buf := make([]byte, max(minDump, r.dumpMin, (2*g+64)*perG))
	n := runtime.Stack(buf, true)
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

// goroutineMetrics are the runtime/metrics samples exitedGoroutines reads.
var goroutineMetrics = []string{"/sched/goroutines-created:goroutines", "/sched/goroutines:goroutines"}

// exitedGoroutines returns the number of goroutines that have exited since
// the process started, from runtime/metrics. The ok result is false where
// the runtime does not report it.
func exitedGoroutines() (n uint64, ok bool) {
	var s [2]metrics.Sample
	for i, name := range goroutineMetrics {
		s[i].Name = name
	}
	metrics.Read(s[:])
	if s[0].Value.Kind() != metrics.KindUint64 || s[1].Value.Kind() != metrics.KindUint64 {
		return 0, false
	}
	created, live := s[0].Value.Uint64(), s[1].Value.Uint64()
	return created - min(created, live), true
}

// inBubble reports whether the calling goroutine is in a testing/synctest
// bubble. Inside a bubble, time.Now carries no monotonic clock reading (the
// runtime omits it there, as the fake clock is not the process's), and
// outside one it always does; Round(0) strips the reading, so the two are
// equal only in a bubble.
func inBubble() bool {
	now := time.Now()
	return now == now.Round(0)
}

// pin keeps the states of goroutine id from every sweep: see sweeper.pinned.
func (r *registry) pin(id uint64) {
	r.pinMu.Lock()
	defer r.pinMu.Unlock()
	if r.pinned == nil {
		r.pinned = make(map[uint64]bool)
	}
	r.pinned[id] = true
}

// sweepListed, if set (by tests, with sweepMu held), is called by a sweep
// after a listing of the live goroutines that fit, with the candidates the
// listing lacked, before any of them is dropped.
var sweepListed func(cands map[uint64]*gstate)
