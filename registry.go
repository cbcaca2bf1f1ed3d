package contextvars

// This file holds the registry: each goroutine's state (goroutine.go), found
// by goroutine id (goroutineid.go).
//
// A goroutine has an entry while it is inside a Run or Call, and while it
// holds an implicit context (a Set outside any Run). The outermost Run of a
// goroutine with no implicit context frees the entry as it returns, normally,
// by panic or by runtime.Goexit; so only implicit contexts outlive the code
// that made them, and only they wait for a sweep (sweep.go).
//
// The shape: a fixed array of numSlots slots, each the home of the goroutine
// ids whose hash lands there, in front of an overflow map (sync.Map, Go's
// hash-trie map) for goroutines whose slot another goroutine holds. Nothing
// grows, freezes or moves: a state stays where it was claimed until it is
// freed or dropped.
//
// Invariants, and why they hold:
//
//   - A gstate's owner word is 0 (free) or its goroutine's id, with
//     ownerImplicit if that goroutine holds an implicit context. Only a
//     goroutine writes its own id into an owner word (acquire), and only it
//     clears it (free); a sweep never writes an owner word, it unlinks the
//     state of an exited goroutine from its slot or the overflow map. So a
//     goroutine that reads its own id in a state's owner word has found its
//     own state, however the state got there: a lookup is a slot load and an
//     owner comparison, validated by the id, with no lock.
//   - A goroutine's state is in its home slot or in the overflow map, never
//     both, and stays there while the goroutine owns it. A lookup tries the
//     slot first, then the map (only when the map is not empty); since only
//     the goroutine adds and removes its own entry, the lookup cannot miss.
//   - Every claim makes progress: it takes a nil slot (one compare-and-swap),
//     or a free state left in the slot (one compare-and-swap of its owner),
//     or else stores a new state in the overflow map. It never waits for or
//     retries against other goroutines.
//   - The registry holds at most numSlots states that no goroutine owns (free
//     states stay in their slots for the next goroutine, so a warm Run
//     allocates nothing), plus the states in use. The overflow map deletes
//     its entries as their goroutines free them, so after any peak of
//     goroutines it shrinks back; the slots never hold more than numSlots.
//
// Locks: lookups (Var.Get, Set, entering a Run whose goroutine already has a
// state) take none. A claim or free of a state in the overflow map, only when
// the goroutine's home slot is held by another goroutine, takes the map's
// internal per-node lock for the store or delete. Sweeps never block
// lookups, claims or frees.

import (
	"sync"
	"sync/atomic"
)

// Flags in gstate.owner; a goroutine id is below both.
const (
	ownerImplicit = 1 << 62 // the owner holds an implicit context
	ownerIDMask   = ownerImplicit - 1
)

const (
	// slotBits sets the number of slots: 4096. With G goroutines in the
	// package at once, about G²/(2·4096) of them find their slot taken
	// and use the overflow map (1% of 100, 11% of 1,000), while the free
	// states the slots keep for reuse come to at most 4096 × 192 bytes,
	// 768 KiB, after any peak.
	slotBits = 12
	numSlots = 1 << slotBits
)

// reg is the registry of goroutine states. It is a variable, not a pointer,
// so that a lookup finds the slots at a fixed address.
var reg registry

// registry maps goroutine ids to their states; see the file comment.
type registry struct {
	slots [numSlots]atomic.Pointer[gstate]

	overflow    sync.Map     // goroutine id (uint64) → *gstate
	overflowLen atomic.Int64 // entries in overflow

	implicit atomic.Int64 // implicit entries in slots and overflow
	sweepAt  atomic.Int64 // implicit entries at which to check whether a sweep is due

	sweeper // see sweep.go
}

// slotOf returns the index of the home slot of goroutine id. Goroutine ids
// are dense and nearly sequential; multiplying by 2^64/φ (Knuth's Fibonacci
// hashing) and keeping the top bits spreads them over the slots.
func slotOf(id uint64) uint64 { return (id * 0x9e3779b97f4a7c15) >> (64 - slotBits) }

// atHome returns the state of the goroutine with id if it is in its home
// slot, else nil: the fast path of a lookup, small enough to inline. Only
// the goroutine with id may look up id (see the file comment).
func (r *registry) atHome(id uint64) *gstate {
	gs := r.slots[slotOf(id)].Load()
	if gs != nil && atomic.LoadUint64(&gs.owner)&^ownerImplicit == id {
		return gs
	}
	return nil
}

// lookupSlow is the slow path of a lookup: the overflow map.
//
//go:noinline
func (r *registry) lookupSlow(id uint64) *gstate {
	if r.overflowLen.Load() == 0 {
		return nil
	}
	if v, ok := r.overflow.Load(id); ok {
		return v.(*gstate)
	}
	return nil
}

// acquire claims a state for the calling goroutine, which has none, marked
// ownerImplicit if implicit; id is the goroutine's id. It is the slow path of
// entering a Run, and of a Set outside any Run.
//
//go:noinline
func (r *registry) acquire(id uint64, implicit bool) *gstate {
	owner := id
	if implicit {
		owner |= ownerImplicit
	}
	gs := r.claim(id, owner)
	if implicit && r.implicit.Add(1) >= r.sweepAt.Load() {
		r.maybeSweep()
	}
	return gs
}

// claim takes the home slot of id for owner, or else an overflow entry.
func (r *registry) claim(id, owner uint64) *gstate {
	slot := &r.slots[slotOf(id)]
	gs := slot.Load()
	if gs == nil {
		// A new state, published by the compare-and-swap: readers that
		// load it see owner.
		gs = &gstate{owner: owner}
		if slot.CompareAndSwap(nil, gs) {
			return gs
		}
		// Another goroutine filled the slot first; gs goes to the
		// overflow map unless the slot's state is free.
		if held := slot.Load(); held != nil && atomic.CompareAndSwapUint64(&held.owner, 0, owner) {
			return held
		}
	} else {
		if atomic.CompareAndSwapUint64(&gs.owner, 0, owner) {
			return gs
		}
		gs = &gstate{owner: owner}
	}
	// The slot is another goroutine's (or was just emptied by a sweep:
	// the next claim of this slot takes it).
	r.overflow.Store(id, gs)
	r.overflowLen.Add(1)
	return gs
}

// free gives up gs, the calling goroutine's state, whose owner word is owner:
// it clears the fields and frees the state in its slot for reuse, or deletes
// its overflow entry.
func (r *registry) free(gs *gstate, owner uint64) {
	gs.current, gs.implicit = nil, nil
	if gs.cached {
		gs.clearCache()
	}
	if owner&ownerImplicit != 0 {
		r.implicit.Add(-1)
	}
	id := owner & ownerIDMask
	if r.slots[slotOf(id)].Load() == gs {
		// The atomic store orders the writes above before the next
		// owner's claim. Nobody else writes a claimed owner word, so
		// there is nothing to compare.
		atomic.StoreUint64(&gs.owner, 0)
		return
	}
	r.overflow.Delete(id)
	r.overflowLen.Add(-1)
}

// eachState calls fn with each state in use and its owner word, then
// reports how many states the slots hold, free or not. States claimed or
// freed meanwhile may or may not be seen.
func (r *registry) eachState(fn func(gs *gstate, owner uint64)) (slotted int) {
	for i := range r.slots {
		gs := r.slots[i].Load()
		if gs == nil {
			continue
		}
		slotted++
		if o := atomic.LoadUint64(&gs.owner); o != 0 {
			fn(gs, o)
		}
	}
	r.overflow.Range(func(_, v any) bool {
		gs := v.(*gstate)
		if o := atomic.LoadUint64(&gs.owner); o != 0 {
			fn(gs, o)
		}
		return true
	})
	return slotted
}

// eachOwner calls fn with the owner word of each state in use.
func (r *registry) eachOwner(fn func(owner uint64)) {
	r.eachState(func(_ *gstate, o uint64) { fn(o) })
}

// drop unlinks gs, the implicit state of an exited goroutine whose owner word
// is owner, from its slot or the overflow map, and reports whether it did.
// Only a sweep calls it, with sweepMu held; it writes nothing of gs, which
// goes to the garbage collector with its context.
func (r *registry) drop(gs *gstate, owner uint64) bool {
	if atomic.LoadUint64(&gs.owner) != owner {
		return false // not the state the sweep listed
	}
	id := owner & ownerIDMask
	if r.slots[slotOf(id)].CompareAndSwap(gs, nil) {
		r.implicit.Add(-1)
		return true
	}
	if r.overflow.CompareAndDelete(id, gs) {
		r.overflowLen.Add(-1)
		r.implicit.Add(-1)
		return true
	}
	return false
}
