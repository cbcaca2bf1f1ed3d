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
// The shape: a fixed array of numBuckets buckets, each the home of the
// goroutine ids whose hash lands there. A bucket is a chain of states,
// linked through gstate.next, read without a lock and changed under the
// bucket's mutex. A bucket whose chain has grown to crowded states gets
// numSub sub-buckets of its own (homeBucket.sub), made once and kept, and
// its goroutines claim states there, by more bits of the same hash, while
// its own chain is crowded and its head is taken; the states already in
// its chain stay there. So a lookup walks at most about crowded states of
// the bucket's own chain, and a chain of its sub-bucket, which is short up
// to numBuckets × numSub × crowded goroutines (half a million). Nothing
// else grows, and nothing freezes or moves: a state stays in the chain it
// was pushed on (gstate.home) until it is freed or dropped. (Moving a
// state to another chain would send a lookup standing on it into that
// chain, past its own state.)
//
// Invariants, and why they hold:
//
//   - A gstate's owner word is 0 (free) or its goroutine's id, with
//     ownerImplicit if that goroutine holds an implicit context. Only a
//     goroutine writes its own id into an owner word (claim, lookupOrClaim,
//     push), and only it clears it (free); a sweep never writes an owner
//     word, it unlinks the state of an exited goroutine from its chain. So
//     a goroutine that reads its own id in a state's owner word has found
//     its own state, however the state got there: a lookup is loads and
//     owner comparisons, validated by the id, with no lock.
//   - A goroutine's state is in its home bucket's chain, or in its
//     sub-bucket's, while the goroutine owns it. Only the bucket's mutex holder
//     changes a chain: it publishes a new state at the head with an atomic
//     store, after setting the state's owner and next, and unlinks a state by
//     an atomic store of its predecessor's next (or the head), leaving the
//     unlinked state's own next as it was. So a lookup walking the chain
//     without the lock, from a head it loaded itself, sees every state that
//     was in the chain before it started and stayed there (its own, in
//     particular: only its goroutine adds or frees it), and a lookup standing
//     on an unlinked state walks on into the chain. (A walk must not start at
//     the next of a head loaded earlier: a sweep may have unlinked that head
//     since, and the state behind it, perhaps the walker's own, be the head
//     now.)
//   - A state whose owner word is 0 is in its chain: a state is unlinked
//     only with a nonzero owner word (its goroutine's, or ownerUnlinked,
//     set by compare-and-swap from 0 before a prune unlinks it), and a
//     state unlinked by a free or a prune keeps ownerUnlinked for good. So a
//     claim, which takes a state only by compare-and-swap of its owner from
//     0, never takes a state that is out of its chain.
//   - Every claim makes progress: it takes a free state in the chain (one
//     compare-and-swap of its owner), or pushes a new one under the bucket's
//     mutex, which is held only for a push or an unlink, never for a wait.
//   - The registry keeps at most one free state per home bucket for reuse
//     (none in sub-buckets): a goroutine frees the head of a home bucket's
//     chain by clearing its owner (no lock), any other state by unlinking it;
//     a free of the head that races with a push in front of it is taken out by
//     whichever of the two comes second (free, claim), and a sweep prunes any
//     free state behind a head all the same. So after any peak of goroutines
//     the chains shrink back, and the free states kept come to at most
//     numBuckets.
//
// Locks: lookups (Var.Get, Set, entering a Run whose goroutine already has a
// state) take none. A claim that finds no free state in its chain, and a
// free of a state that is not its chain's head, take the bucket's mutex for
// one push or unlink. Sweeps take each bucket's mutex for the unlinks in it,
// and never block lookups.

import (
	"sync"
	"sync/atomic"
)

// Flags in gstate.owner; a goroutine id is below both.
const (
	ownerImplicit = 1 << 62 // the owner holds an implicit context
	ownerIDMask   = ownerImplicit - 1

	// ownerUnlinked is the owner word of a state taken out of its chain
	// by a free or a prune: no goroutine's, and never claimed again.
	ownerUnlinked = 1 << 63
)

// bucketBits sets the number of buckets: 4096. With G goroutines in the
// package at once, chains are G/4096 long on average, so a lookup that misses
// the head of its chain is rare below a thousand goroutines. Each state
// behind the head costs a lookup a load, a cache miss where the goroutine
// has been idle: so a bucket whose chain reaches crowded states gets numSub
// sub-buckets (see the file comment), and at 100,000 goroutines a lookup
// walks two or three states, not 24. The free states the buckets keep for
// reuse come to at most 4096 × 192 bytes, 768 KiB, after any peak (none is
// kept in a sub-bucket), and the sub-buckets, once made, to at most
// 4096 × numSub × 32 bytes, 2 MiB, after a peak of some 30,000 states or
// more: goroutines inside Runs, or implicit contexts, those of exited
// goroutines waiting for a sweep included. Once a peak has passed, a
// crowded bucket's goroutines claim in its own chain again (homeBucket.claim),
// so the fast paths are as before it.
const (
	bucketBits = 12
	numBuckets = 1 << bucketBits

	crowded = 8 // states in a bucket's own chain that make it crowded
	subBits = 4 // a crowded bucket has 1<<subBits sub-buckets
	numSub  = 1 << subBits
)

// reg is the registry of goroutine states. It is a variable, not a pointer,
// so that a lookup finds the buckets at a fixed address.
var reg registry

// registry maps goroutine ids to their states; see the file comment.
type registry struct {
	buckets [numBuckets]homeBucket

	implicit atomic.Int64 // implicit entries in all chains
	sweepAt  atomic.Int64 // implicit entries at which to check whether a sweep is due

	sweeper // see sweep.go
}

// bucket is one chain of states; see the file comment.
type bucket struct {
	head atomic.Pointer[gstate] // read without a lock; stored with mu held
	mu   sync.Mutex             // held to push or unlink a state

	// top is at least the highest id that ever claimed a state here. A
	// goroutine with a higher id has no state in the chain, so its first
	// lookup need not walk it: goroutine ids only grow, so that is every
	// new goroutine's. Only a goroutine looks up its own id, and it raises
	// top before it claims, so program order makes the test exact for it.
	top atomic.Uint64

	// n is the number of states in the chain, free ones included:
	// changed with mu held, read without it to see whether a home
	// bucket is crowded.
	n atomic.Int32

	// isSub marks a sub-bucket, which keeps no free state for reuse: a
	// free unlinks the state, so that after a peak of goroutines the
	// registry keeps at most numBuckets free states, whatever it grew.
	isSub bool
}

// homeBucket is a bucket of the registry's array: a bucket, and the
// sub-buckets it gets when it is crowded.
type homeBucket struct {
	bucket

	// sub is nil until the bucket's chain has held crowded states, then
	// its sub-buckets, for good: a goroutine whose home this is claims
	// its state in sub[subIndex(id)] while the chain is crowded and its
	// head is taken (homeBucket.claim).
	sub atomic.Pointer[[numSub]bucket]
}

// bucketOf returns the home bucket of goroutine id. Goroutine ids are dense
// and nearly sequential; multiplying by 2^64/φ (Knuth's Fibonacci hashing)
// and keeping the top bits spreads them over the buckets. (Runs of adjacent
// ids in adjacent buckets, which the hardware prefetches, made a new
// goroutine's first Run about 50 ns faster, but spread the ids of 2,000 to
// 30,000 live goroutines less evenly, putting twice as many off the heads
// of their chains: the fast path of every lookup counts for more.)
func (r *registry) bucketOf(id uint64) *homeBucket { return &r.buckets[bucketIndex(id)] }

// bucketIndex returns the index of bucketOf(id).
func bucketIndex(id uint64) uint64 { return (id * 0x9e3779b97f4a7c15) >> (64 - bucketBits) }

// subIndex returns the index of id's sub-bucket in its crowded home bucket:
// the hash's next bits.
func subIndex(id uint64) uint64 {
	return (id * 0x9e3779b97f4a7c15) >> (64 - bucketBits - subBits) & (numSub - 1)
}

// claim takes a state for owner, a goroutine whose home bucket is hb: as
// bucket.claim does, in hb's own chain, while that chain is shorter than
// crowded (always, after a peak has passed: so a goroutine's Run then
// reuses the free head and allocates nothing, as before the peak). Else it
// takes hb's head if that is free, or a state in its sub-bucket.
func (hb *homeBucket) claim(owner uint64) *gstate {
	sub := hb.sub.Load()
	if sub == nil || hb.n.Load() < crowded {
		return hb.bucket.claim(owner)
	}
	id := owner & ownerIDMask
	if gs := hb.head.Load(); gs != nil && atomic.LoadUint64(&gs.owner) == 0 {
		if id > hb.top.Load() {
			hb.raiseTop(id) // before the claim: see bucket.top
		}
		if atomic.CompareAndSwapUint64(&gs.owner, 0, owner) {
			return gs
		}
	}
	return sub[subIndex(id)].claim(owner)
}

// find returns the state in b's chain whose owner is id, or nil: a walk
// from a head it loads itself (see lookupSlow), unless no goroutine as
// high as id ever claimed a state in b.
func (b *bucket) find(id uint64) *gstate {
	if id > b.top.Load() {
		return nil // never claimed here: see bucket.top
	}
	for gs := b.head.Load(); gs != nil; gs = gs.next.Load() {
		if atomic.LoadUint64(&gs.owner)&^ownerImplicit == id {
			return gs
		}
	}
	return nil
}

// atHome returns the state of the goroutine with id if it is the head of
// its chain, else nil: the fast path of a lookup, small enough to inline.
// Only the goroutine with id may look up id (see the file comment).
func (r *registry) atHome(id uint64) *gstate {
	gs := r.bucketOf(id).head.Load()
	if gs != nil && atomic.LoadUint64(&gs.owner)&^ownerImplicit == id {
		return gs
	}
	return nil
}

// lookupSlow is the slow path of a lookup: the whole chain, from a head it
// loads itself. (Not from the head atHome saw, nor from that head's next: a
// sweep may have dropped that head since, making the goroutine's own state
// the head, which a walk from the old head's next would skip. The goroutine
// would then find no state inside its own Run: Get would see nothing, and
// Set would make a second, implicit state that outlives the Run;
// TestRegistry_lookupWhileSweepDropsHead.)
//
//go:noinline
func (r *registry) lookupSlow(id uint64) *gstate {
	hb := r.bucketOf(id)
	if sub := hb.sub.Load(); sub != nil {
		if gs := sub[subIndex(id)].find(id); gs != nil {
			return gs
		}
	}
	return hb.find(id)
}

// lookupOrClaim returns the state of the calling goroutine, whose id is id,
// claiming one if it has none: the slow path of entering a Run, lookupSlow
// and acquire in one call, with claim's take written out (the compiler
// would not inline it), so that a goroutine's outermost Run, which claims
// the free head of its chain, makes one call for it.
//
//go:noinline
func (r *registry) lookupOrClaim(id uint64) *gstate {
	hb := r.bucketOf(id)
	if hb.sub.Load() != nil {
		if gs := r.lookupSlow(id); gs != nil {
			return gs
		}
		return hb.claim(id)
	}
	b := &hb.bucket
	if t := b.top.Load(); id <= t {
		for gs := b.head.Load(); gs != nil; gs = gs.next.Load() {
			if atomic.LoadUint64(&gs.owner)&^ownerImplicit == id {
				return gs
			}
		}
	} else { // never claimed here (see bucket.top): claim raises top
		b.raiseTop(id)
	}
	if gs := b.head.Load(); gs != nil && atomic.CompareAndSwapUint64(&gs.owner, 0, id) {
		return gs
	}
	return b.push(id)
}

// acquire claims a state for the calling goroutine, which has none, marked
// ownerImplicit if implicit; id is the goroutine's id. It is the slow path of
// a Set outside any Run (newImplicit); entering a Run has its own,
// lookupOrClaim.
//
//go:noinline
func (r *registry) acquire(id uint64, implicit bool) *gstate {
	owner := id
	if implicit {
		owner |= ownerImplicit
	}
	gs := r.bucketOf(id).claim(owner)
	if implicit && r.implicit.Add(1) >= r.sweepAt.Load() {
		r.maybeSweep()
	}
	return gs
}

// claim takes the head of b's chain for owner if it is free, or else
// pushes a new state. (It looks no farther: states behind the head are
// seldom free, as frees unlink them, and walking a long chain of other
// goroutines' states would cost a cache miss each.) lookupOrClaim writes
// the same take out for entering a Run; the push is out of line.
func (b *bucket) claim(owner uint64) *gstate {
	if id := owner & ownerIDMask; id > b.top.Load() {
		b.raiseTop(id)
	}
	if gs := b.head.Load(); gs != nil && atomic.CompareAndSwapUint64(&gs.owner, 0, owner) {
		return gs
	}
	return b.push(owner)
}

// raiseTop raises b.top to id, if it is lower.
//
//go:noinline
func (b *bucket) raiseTop(id uint64) {
	for t := b.top.Load(); id > t && !b.top.CompareAndSwap(t, id); t = b.top.Load() {
	}
}

// push makes a new state for owner at the head of b's chain: claim's slow
// path.
//
//go:noinline
func (b *bucket) push(owner uint64) *gstate {
	gs := &gstate{owner: owner, home: b}
	b.mu.Lock()
	old := b.head.Load()
	gs.next.Store(old)
	b.head.Store(gs) // publishes gs with its owner, home and next
	n := b.n.Add(1)
	// If old was freed after the compare-and-swap in claim (or
	// lookupOrClaim) failed, it is now free behind the head, where no
	// claim looks: take it out. (A free that comes after this push sees
	// it is no longer the head and takes itself out: see free. Atomics are
	// sequentially consistent, so one of the two sees the other.)
	if old != nil && atomic.CompareAndSwapUint64(&old.owner, 0, ownerUnlinked) {
		gs.next.Store(old.next.Load())
		n = b.n.Add(-1)
	}
	b.mu.Unlock()
	if n >= crowded {
		reg.crowd(owner & ownerIDMask)
	}
	return gs
}

// crowd gives the home bucket of goroutine id its sub-buckets, if it has
// none and is one (not a sub-bucket) whose chain is crowded: later claims
// go there. The states in the chain stay; see the file comment.
//
//go:noinline
func (r *registry) crowd(id uint64) {
	hb := r.bucketOf(id)
	if hb.n.Load() >= crowded && hb.sub.Load() == nil {
		sub := new([numSub]bucket)
		for i := range sub {
			sub[i].isSub = true
		}
		hb.sub.CompareAndSwap(nil, sub)
	}
}

// unlinkLocked removes gs from b's chain, if it is there. b.mu must be
// held. gs keeps its next, so that a lookup standing on it walks on.
func (b *bucket) unlinkLocked(gs *gstate) bool {
	if b.head.Load() == gs {
		b.head.Store(gs.next.Load())
		b.n.Add(-1)
		return true
	}
	for p := b.head.Load(); p != nil; p = p.next.Load() {
		if p.next.Load() == gs {
			p.next.Store(gs.next.Load())
			b.n.Add(-1)
			return true
		}
	}
	return false
}

// free gives up gs, the calling goroutine's state, whose owner word is owner:
// it clears the fields, then frees the state in place if it is the head of
// a home bucket's chain (kept for reuse), or unlinks it. Every way through
// makes a locked instruction before it returns (the store of the owner
// word, or the bucket's mutex): exit's leaveBeforeFree, a release store
// just before it, relies on that (word.go).
func (r *registry) free(gs *gstate, owner uint64) {
	gs.current, gs.implicit, gs.dropPending, gs.hookCtx = nil, nil, false, nil
	if gs.cached {
		gs.clearCache()
	}
	if owner&ownerImplicit != 0 {
		r.implicit.Add(-1)
	}
	b := gs.home
	if b.head.Load() == gs && !b.isSub {
		// The atomic store orders the writes above before the next
		// owner's claim. Nobody else writes a claimed owner word, so
		// there is nothing to compare.
		atomic.StoreUint64(&gs.owner, 0)
		// If a state was pushed in front meanwhile, gs is free behind
		// the head, where no claim looks: take it out, unless a
		// claim took it first (see claim for the other order).
		if b.head.Load() != gs && atomic.CompareAndSwapUint64(&gs.owner, 0, ownerUnlinked) {
			b.mu.Lock()
			b.unlinkLocked(gs)
			b.mu.Unlock()
		}
		return
	}
	b.mu.Lock()
	b.unlinkLocked(gs)
	b.mu.Unlock()
	atomic.StoreUint64(&gs.owner, ownerUnlinked)
}

// eachState calls fn with each state in use and its owner word, and with
// whether it is not its chain's head (overflow); it returns how many free
// states the chains hold. States claimed or freed meanwhile may or may not
// be seen.
func (r *registry) eachState(fn func(gs *gstate, owner uint64, overflow bool)) (free int) {
	r.eachBucket(func(b *bucket) {
		head := b.head.Load()
		for gs := head; gs != nil; gs = gs.next.Load() {
			switch o := atomic.LoadUint64(&gs.owner); {
			case o == 0:
				free++
			case o&ownerUnlinked == 0:
				fn(gs, o, gs != head)
			}
		}
	})
	return free
}

// eachBucket calls fn with each bucket, sub-buckets included.
func (r *registry) eachBucket(fn func(b *bucket)) {
	for i := range r.buckets {
		hb := &r.buckets[i]
		fn(&hb.bucket)
		if sub := hb.sub.Load(); sub != nil {
			for j := range sub {
				fn(&sub[j])
			}
		}
	}
}

// eachOwner calls fn with the owner word of each state in use.
func (r *registry) eachOwner(fn func(owner uint64)) {
	r.eachState(func(_ *gstate, o uint64, _ bool) { fn(o) })
}

// drop unlinks gs, the implicit state of an exited goroutine whose owner word
// is owner, from its chain, and reports whether it did. Only a sweep calls
// it, with sweepMu held; it writes nothing of gs, which goes to the garbage
// collector with its context.
func (r *registry) drop(gs *gstate, owner uint64) bool {
	if atomic.LoadUint64(&gs.owner) != owner {
		return false // not the state the sweep listed
	}
	b := gs.home
	b.mu.Lock()
	ok := b.unlinkLocked(gs)
	b.mu.Unlock()
	if ok {
		r.implicit.Add(-1)
	}
	return ok
}

// pruneFree unlinks the free states that are not their chain's head: frees
// leave them behind when another state was pushed in front meanwhile. Only a
// sweep calls it. It takes each such state from 0 to ownerUnlinked by
// compare-and-swap before unlinking it, so a claim racing with it either
// took the state first (and it stays) or fails and looks on.
func (r *registry) pruneFree() {
	r.eachBucket(func(b *bucket) {
		if head := b.head.Load(); head == nil || head.next.Load() == nil {
			return
		}
		b.mu.Lock()
		for p := b.head.Load(); p != nil; {
			n := p.next.Load()
			if n != nil && atomic.CompareAndSwapUint64(&n.owner, 0, ownerUnlinked) {
				p.next.Store(n.next.Load())
				b.n.Add(-1)
				continue
			}
			p = n
		}
		b.mu.Unlock()
	})
}
