package contextvars

// This file holds the registry: each goroutine's state (goroutine.go), found
// by goroutine id (goroutineid.go) without a lock, in numShards shards of
// open-addressed tables.
//
// A goroutine has an entry while it is inside a Run or Call, and while it
// holds an implicit context (a Set outside any Run). The outermost Run of a
// goroutine with no implicit context frees the entry as it returns, normally,
// by panic or by runtime.Goexit; so only implicit contexts outlive the code
// that made them, and only they wait for a sweep (sweep.go).
//
// Invariants, and why they hold:
//
//   - A gstate's owner word is 0 (free) or its goroutine's id, with flags. A
//     goroutine claims a free gstate by one compare-and-swap of owner from 0
//     to its id (or a nil slot by one compare-and-swap of the slot), and
//     frees it by one compare-and-swap back to 0. Only the owner frees it.
//     Free gstates stay in their slots for the next goroutine, so that a
//     goroutine's first Run allocates nothing once a table has warmed up.
//   - A goroutine's own gstate lies within maxDist slots of its home slot in
//     its shard's current table, so a lookup (a goroutine looking for its own
//     id) probes no farther: a claim raises maxDist to its distance before
//     its goroutine next looks, maxDist never falls, slots never go back to
//     nil, and a claim that landed in a table replaced meanwhile is undone
//     and made again in the new one (registry.acquire).
//   - A table is replaced (to grow, or by a sweep) under its shard's mutex,
//     and first frozen slot by slot, each by compare-and-swap: a nil slot
//     becomes frozenSlot, a free gstate's owner ownerMoved (it goes to
//     statePool), a claimed one's owner gets ownerMoved added. So a claim or
//     a free either happened before the freeze, and the new table has it, or
//     fails after it; a goroutine that meets ownerMoved on its own gstate,
//     or frozenSlot, waits on the mutex and looks again. Once the new table
//     is published, ownerMoved comes off the gstates it holds.

import (
	"sync"
	"sync/atomic"
)

// Flags in gstate.owner; a goroutine id is below both.
const (
	ownerMoved    = 1 << 63 // the state's table is being replaced; see the file comment
	ownerImplicit = 1 << 62 // the owner holds an implicit context
	ownerIDMask   = ownerImplicit - 1
)

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

	sweeper // see sweep.go
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
			panic(errInternal("freeing a goroutine state not owned"))
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
