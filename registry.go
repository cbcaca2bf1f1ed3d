package contextvars

// This file holds the registry: the state of each goroutine that uses the
// package (its current context and lookup cache), found by goroutine id
// (goroutineid.go) without a lock.
//
// # Who has an entry
//
// A goroutine has an entry while it is inside a Run or Call, and while it
// holds an implicit context (made by a Set outside any Run). The outermost
// Run of a goroutine that has no implicit context drops the entry as it
// returns, normally, by panic or by runtime.Goexit; Go runs its function in
// such a Run. So only implicit contexts outlive the code that made them, and
// only they wait for a sweep (below).
//
// # Slots and states
//
// The registry has numShards shards, chosen by the goroutine id's hash, each
// an open-addressed table of slots with linear probing. A slot holds a
// *gstate or nil. A gstate stays in its slot when its goroutine is done with
// it, free for the next goroutine that probes there, so that a goroutine's
// first Run allocates nothing once the table has warmed up.
//
// A gstate's owner word says whose it is: 0 if free, else the goroutine's id
// with ownerImplicit if that goroutine holds an implicit context. A goroutine
// claims a free gstate by one compare-and-swap of owner from 0 to its id (or
// a nil slot by one compare-and-swap of the slot), and frees it by one
// compare-and-swap back to 0. Only the owner frees its gstate, and only the
// owner reads or writes its other fields; the compare-and-swaps order one
// owner's writes before the next owner's.
//
// A goroutine claims the first free gstate or nil slot on its probe path,
// within maxProbe slots of its home, and raises the table's maxDist to that
// distance if it is farther. A lookup is a goroutine looking for its own
// id: from the id's home slot, as far as maxDist or to the first nil slot,
// the gstate whose owner is the id. Slots go from nil to non-nil and never
// back, and maxDist never falls, so a goroutine always finds its own gstate.
// Since free gstates stay, a table fills up with them and nil slots become
// rare; maxDist, not nil slots, keeps a lookup that misses short.
//
// # Growing a table
//
// When a goroutine finds nothing free within maxProbe of its home, its
// shard builds a table sized for the gstates in use, under the shard's
// mutex (registration and lookups take no lock); sweeps rebuild tables the
// same way, leaving dead goroutines' gstates out. It first freezes every slot
// of the old table: a nil slot becomes frozenSlot, a free gstate's owner
// becomes ownerMoved (so it can no longer be claimed; it goes to statePool), and
// a claimed gstate's owner gets ownerMoved added, so that its goroutine cannot
// free it meanwhile. Each step is a compare-and-swap, so a claim or a free
// either happened before it (and the grower sees it) or fails after it. The
// claimed gstates go into the new table at their owners' probe paths; the new
// table is published; then ownerMoved is taken off them. A goroutine that meets
// ownerMoved on its own gstate, or frozenSlot, waits on the shard's mutex for
// the growth to end and looks again. A claim that succeeded on a table that is
// no longer current (its goroutine loaded the table before it was replaced)
// is undone and made again on the new table, so every gstate in use sits on
// its owner's probe path in the current table.
//
// # Sweeps
//
// Go has no hook that runs when a goroutine exits, so an implicit context
// lives until a sweep finds its goroutine gone. A sweep lists the live
// goroutines with one runtime.Stack(buf, true) (public API: it prints
// "goroutine N [...]" for every user goroutine), then retires the implicit
// entries whose goroutines the listing lacks: their gstates, with the
// contexts they hold, become garbage, and each slot gets a fresh free gstate.
//
// Why this is safe: a sweep takes its candidates, the implicit entries, before
// the listing, so each was made by its goroutine before the listing; a
// goroutine that was alive then and is missing from the listing has exited.
// The runtime never reuses a goroutine id, and only the sweep (under the
// shard's mutex, which also keeps growth out) drops an implicit entry.
// Entries made after the candidates were taken are not looked at. One caveat:
// the runtime lists the goroutine that runs finalizers and cleanups only while
// it is running one, so an implicit context made by a finalizer may be
// dropped between two finalizers; inside Run nothing is.
//
// A sweep stops the world for a time that grows with the number of
// goroutines, so it runs only when it pays: when the implicit entries number
// at least max(minSweep, 2 × runtime.NumGoroutine()). At most
// NumGoroutine of them can belong to live goroutines, so at least half of
// the entries a sweep examines are dead, and its traceback of G goroutines
// is paid for by at least G exits. Goroutines that make implicit contexts
// check the rule when the entries reach sweepAt, max(minSweep, 2 × the
// entries the last sweep kept, 2 × NumGoroutine at the last check), so that
// not every one of them counts goroutines; if a sweep is under way, they
// wait for it, so they cannot outrun it. While there are at least minSweep
// entries, a timer (time.AfterFunc: no goroutine of ours waits) checks the
// rule again, at most sweepMaxPeriod later, so that the contexts of
// goroutines that exited are reclaimed even if no goroutine makes an
// implicit context after them.

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// gstate is one goroutine's state. Only its owner reads or writes the fields
// after owner.
type gstate struct {
	// owner is the id of the goroutine whose state this is, with flags, or
	// 0 if the state is free; see the file comment. It is read and changed
	// with sync/atomic only.
	owner uint64

	current *Context // the context the goroutine runs in; nil: none

	// cache remembers the last lookups of vars in tries of more than one
	// var, as CPython's ContextVar caches its last value: reading a var
	// again costs what reading the only var of a context costs, however
	// many vars the context holds. Entries are checked against the current
	// root, so a hit is always right. An entry keeps its trie alive, so the
	// cache is cleared whenever the goroutine's current trie is replaced
	// (Set, Reset) and whenever it leaves a Run: it only ever refers to
	// tries that the goroutine's contexts hold anyway.
	cache  [lookupCacheSize]cacheEntry
	cached bool // some entry of cache may be set

	// nextID and endID are the block of context ids this state hands out
	// (newContextID); taking ids in blocks keeps goroutines off one shared
	// counter. The block passes on with the state to its next owner.
	nextID, endID uint64

	// The padding rounds the state up to a size class of its own (192
	// bytes), so that states of goroutines on different cores, which are
	// allocated side by side, share few cache lines.
	_ [48]byte
}

// Flags in gstate.owner; a goroutine id is below both.
const (
	ownerMoved    = 1 << 63 // the state's table is being replaced; see the file comment
	ownerImplicit = 1 << 62 // the owner holds an implicit context
	ownerIDMask   = ownerImplicit - 1
)

// clearCache drops the goroutine's lookup cache.
func (gs *gstate) clearCache() {
	gs.cache, gs.cached = [lookupCacheSize]cacheEntry{}, false
}

// lookupCacheSize is the number of entries of a goroutine's lookup cache,
// indexed by the low bits of the var's hash: enough for the few vars a
// request reads again and again (request ID, span, tenant, deadline).
const lookupCacheSize = 4

// cacheEntry records that in the trie rooted at root, key is bound to leaf
// (nil: not bound).
type cacheEntry struct {
	key  *varCore
	root *node
	leaf *node
}

// contextIDs is the last context id given out in a block; see gstate.
var contextIDs atomic.Uint64

// idBlock is the number of context ids a state takes at once.
const idBlock = 1024

// newContextID returns a context id never returned before: ids come from a
// 62-bit counter, which does not wrap in the life of a process.
func (gs *gstate) newContextID() uint64 {
	if gs.nextID == gs.endID {
		gs.endID = contextIDs.Add(idBlock) + 1
		gs.nextID = gs.endID - idBlock
	}
	id := gs.nextID
	gs.nextID++
	return id
}

const (
	// shardBits sets the number of shards: 64, so that goroutines
	// registering on many cores at once seldom meet in one shard's
	// counters or table growth.
	shardBits = 6
	numShards = 1 << shardBits

	// minTable is the fewest slots of a shard's table: 32, so that the
	// states left in a table (they stay for reuse) come to at most 2,048
	// in all, 384 KiB, in a process that never has more goroutines in
	// the package at once than the tables started with.
	minTable = 32

	// maxProbe is the farthest from its home slot that a goroutine claims
	// a state; a claim that finds nothing free so close grows the table.
	// It bounds a lookup that misses (a goroutine with no state) to
	// maxProbe+1 slots, as nil slots no longer end probes once every slot
	// holds a state.
	maxProbe = 16

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

// reg is the registry of goroutine states.
// It is a variable, not a pointer, so that a lookup finds a shard at a
// fixed address.
var reg registry

func init() {
	for i := range reg.shards {
		reg.shards[i].table.Store(newTable(minTable))
	}
}

// registry is the set of shards and the sweep's state; see the file comment.
type registry struct {
	shards [numShards]shard

	implicit atomic.Int64 // implicit entries in all shards
	sweepAt  atomic.Int64 // implicit entries at which to check whether a sweep is due

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

// shard is one of the registry's tables.
type shard struct {
	table atomic.Pointer[gtable] // never nil

	mu sync.Mutex // held while the table grows or is swept

	_ [48]byte // keeps shards on cache lines of their own
}

// gtable is one open-addressed table of slots.
type gtable struct {
	shift uint // 64 - log2(len(slots))
	mask  uint64
	// maxDist is the farthest from its home slot that a state has been
	// claimed in this table: a goroutine's own state is never farther,
	// so a lookup looks no farther. It only grows, and a goroutine raises
	// it before it next looks itself up.
	maxDist atomic.Int64
	slots   []atomic.Pointer[gstate]
}

// frozenSlot stands in a nil slot of a table that is being replaced.
var frozenSlot = &gstate{owner: ownerMoved}

func newTable(size int) *gtable {
	shift := uint(64)
	for s := size; s > 1; s >>= 1 {
		shift--
	}
	return &gtable{shift: shift, mask: uint64(size - 1), slots: make([]atomic.Pointer[gstate], size)}
}

// idHash spreads goroutine ids, which are dense and nearly sequential, over
// 64 bits: multiplying by 2^64/φ (Knuth's Fibonacci hashing). Its top
// shardBits bits choose the shard, the bits below them the home slot.
func idHash(id uint64) uint64 { return id * 0x9e3779b97f4a7c15 }

// shardOf returns the index of the shard for hash h.
func shardOf(h uint64) uint64 { return h >> (64 - shardBits) }

// home returns the first slot to probe for hash h.
// (The shift is masked to tell the compiler it is below 64.)
func (t *gtable) home(h uint64) uint64 { return (h << shardBits) >> (t.shift & 63) }

// atHome returns the state of the goroutine with id if it is in its home
// slot, else nil: the fast path of a lookup, small enough to inline. A
// lookup is a goroutine looking for its own state: only that goroutine may
// call atHome or lookupSlow with its id.
func (r *registry) atHome(id uint64) *gstate {
	h := idHash(id)
	t := r.shards[shardOf(h)].table.Load()
	gs := t.slots[t.home(h)].Load()
	if gs != nil && atomic.LoadUint64(&gs.owner)&^ownerImplicit == id {
		return gs
	}
	return nil
}

// lookupSlow is the slow path of a lookup: the probe past the home slot.
//
//go:noinline
func (r *registry) lookupSlow(id uint64) *gstate {
	h := idHash(id)
	s := &r.shards[shardOf(h)]
	for {
		gs, growing := s.table.Load().find(h, id)
		if !growing {
			return gs
		}
		s.waitGrowth()
	}
}

// find probes t for the state owned by id, whose hash is h. growing reports
// that t is being replaced and the answer may be wrong.
func (t *gtable) find(h, id uint64) (gs *gstate, growing bool) {
	i := t.home(h)
	for range t.maxDist.Load() + 1 {
		gs := t.slots[i].Load()
		switch {
		case gs == nil:
			return nil, false
		case gs == frozenSlot:
			return nil, true
		}
		if o := atomic.LoadUint64(&gs.owner); o&ownerIDMask == id {
			return gs, o&ownerMoved != 0
		}
		i = (i + 1) & t.mask
	}
	return nil, false
}

// waitGrowth returns once the shard's table is not being replaced.
func (s *shard) waitGrowth() {
	s.mu.Lock()
	s.mu.Unlock() //nolint:staticcheck // an empty critical section: waiting is the point
}

// acquire returns the calling goroutine's state, claiming one for it if
// it has none, marked ownerImplicit if implicit; id is the goroutine's id.
// It is the slow path of entering a Run, and of a Set outside any Run.
//
//go:noinline
func (r *registry) acquire(id uint64, implicit bool) *gstate {
	owner := id
	if implicit {
		owner |= ownerImplicit
	}
	h := idHash(id)
	s := &r.shards[shardOf(h)]
	for {
		t := s.table.Load()
		gs, how := t.acquire(h, owner)
		switch how {
		case found:
			return gs
		case retry:
			continue
		case growing:
			s.waitGrowth()
			continue
		case full:
			s.grow(t)
			continue
		}
		if s.table.Load() != t {
			// t was replaced after we loaded it, and gs may not be on
			// our probe path in its successor: start again there.
			r.free(gs, owner)
			continue
		}
		if implicit && r.implicit.Add(1) >= r.sweepAt.Load() {
			r.maybeSweep()
		}
		return gs
	}
}

// statePool holds free states that a table growth left behind, for nil
// slots to take (newState), so that goroutines coming and going do not
// allocate a state each. A state may go back into use while a replaced
// table still holds it: a goroutine that claims it there finds the table
// replaced and gives it up (registry.acquire), and a goroutine that finds
// its own id in it has found its own state, whatever the table.
var statePool sync.Pool

// newState returns a state owned by owner, for a nil slot.
func newState(owner uint64) *gstate {
	if gs, _ := statePool.Get().(*gstate); gs != nil {
		// Replaced tables may read owner; nothing else of gs.
		atomic.StoreUint64(&gs.owner, owner)
		return gs
	}
	return &gstate{owner: owner}
}

// Outcomes of gtable.acquire.
const (
	found   = iota // the goroutine's own state
	claimed        // a free state or a new one in a nil slot, now the goroutine's
	retry          // a slot changed under us: probe again
	growing        // the table is being replaced: wait, then probe again
	full           // no room: grow the table, then probe again
)

// acquire looks in t, from h's home slot on, for the state owned by
// owner's id: as far as t.maxDist, or to the first nil slot. If there is
// none, it claims for owner, with one compare-and-swap, the first free state
// or nil slot it passed or comes to within maxProbe of the home slot, and
// raises t.maxDist to its distance.
func (t *gtable) acquire(h, owner uint64) (gs *gstate, how int) {
	id := owner & ownerIDMask
	limit := t.maxDist.Load()
	var free *gstate
	var freeDist int64
	i := t.home(h)
	for d := int64(0); d < int64(len(t.slots)) && d <= max(limit, maxProbe); d++ {
		if free != nil && d > limit {
			break // past where our own state could be
		}
		slot := &t.slots[i]
		gs := slot.Load()
		if gs == nil {
			if free != nil {
				break // no state of ours beyond a nil slot
			}
			gs = newState(owner)
			if !slot.CompareAndSwap(nil, gs) {
				statePool.Put(gs)
				return nil, retry
			}
			t.raiseMaxDist(d)
			return gs, claimed
		}
		if gs == frozenSlot {
			return nil, growing
		}
		switch o := atomic.LoadUint64(&gs.owner); {
		case o&ownerIDMask == id:
			if o&ownerMoved != 0 {
				return nil, growing
			}
			return gs, found
		case o == 0:
			if free == nil && d <= maxProbe {
				free, freeDist = gs, d
			}
		case o == ownerMoved:
			return nil, growing
		}
		i = (i + 1) & t.mask
	}
	if free == nil {
		return nil, full
	}
	if !atomic.CompareAndSwapUint64(&free.owner, 0, owner) {
		return nil, retry
	}
	t.raiseMaxDist(freeDist)
	return free, claimed
}

// raiseMaxDist makes t.maxDist at least d.
func (t *gtable) raiseMaxDist(d int64) {
	for m := t.maxDist.Load(); d > m && !t.maxDist.CompareAndSwap(m, d); m = t.maxDist.Load() {
	}
}

// free gives up gs, whose owner is owner (the calling goroutine).
func (r *registry) free(gs *gstate, owner uint64) {
	if !atomic.CompareAndSwapUint64(&gs.owner, owner, 0) {
		r.freeSlow(gs, owner)
	}
}

// freeSlow is free while gs's table is being replaced.
//
//go:noinline
func (r *registry) freeSlow(gs *gstate, owner uint64) {
	s := &r.shards[shardOf(idHash(owner&ownerIDMask))]
	for !atomic.CompareAndSwapUint64(&gs.owner, owner, 0) {
		if atomic.LoadUint64(&gs.owner) != owner|ownerMoved {
			panic("contextvars: internal error: freeing a goroutine state not owned")
		}
		s.waitGrowth()
	}
}

// grow replaces t, the shard's table, by a table sized for the states in
// use, unless that has been done already; see "Growing a table" in the file
// comment.
func (s *shard) grow(t *gtable) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.table.Load() != t {
		return
	}
	s.rebuildLocked(nil)
}

// rebuildLocked freezes the shard's table and publishes a new one holding
// its states in use, except those for which drop returns true (their slots
// are left out). s.mu must be held. It returns the states dropped.
func (s *shard) rebuildLocked(drop func(gs *gstate, owner uint64) bool) (dropped int) {
	old := s.table.Load()
	var kept, spare []*gstate
	for i := range old.slots {
		slot := &old.slots[i]
	freeze:
		gs := slot.Load()
		if gs == nil {
			if !slot.CompareAndSwap(nil, frozenSlot) {
				goto freeze
			}
			continue
		}
		o := atomic.LoadUint64(&gs.owner)
		switch {
		case o&ownerMoved != 0:
			// Left behind by an earlier growth: no goroutine's.
		case o == 0:
			if !atomic.CompareAndSwapUint64(&gs.owner, 0, ownerMoved) {
				goto freeze
			}
			spare = append(spare, gs)
		case drop != nil && drop(gs, o):
			// A dead goroutine's: only a sweep drops, under s.mu, and
			// its goroutine cannot free it.
			atomic.StoreUint64(&gs.owner, ownerMoved)
			dropped++
		default:
			if !atomic.CompareAndSwapUint64(&gs.owner, o, o|ownerMoved) {
				goto freeze
			}
			kept = append(kept, gs)
		}
	}
	size := minTable
	for size < 4*len(kept) {
		size *= 2
	}
	t := newTable(size)
	var maxDist int64
	for _, gs := range kept {
		h := idHash(atomic.LoadUint64(&gs.owner) & ownerIDMask)
		i, d := t.home(h), int64(0)
		for t.slots[i].Load() != nil {
			i, d = (i+1)&t.mask, d+1
		}
		t.slots[i].Store(gs)
		maxDist = max(maxDist, d)
	}
	t.maxDist.Store(maxDist)
	s.table.Store(t)
	for _, gs := range kept {
		atomic.AndUint64(&gs.owner, ^uint64(ownerMoved))
	}
	for _, gs := range spare {
		statePool.Put(gs)
	}
	return dropped
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

// eachOwner calls fn with the owner word of each state in use, each shard
// under its mutex, so that no growth moves states meanwhile.
func (r *registry) eachOwner(fn func(owner uint64)) {
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		t := s.table.Load()
		for j := range t.slots {
			if gs := t.slots[j].Load(); gs != nil {
				if o := atomic.LoadUint64(&gs.owner); o != 0 && o&ownerMoved == 0 {
					fn(o)
				}
			}
		}
		s.mu.Unlock()
	}
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
