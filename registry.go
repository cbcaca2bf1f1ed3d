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
// goroutine ids whose hash lands there. A bucket holds one state in place,
// its slot (homeBucket.slot), which a goroutine's first Run takes when it is
// free, so that a new goroutine's Run touches the bucket's own cache lines
// and allocates nothing; and a chain of states, linked through gstate.next,
// read without a lock and changed under the bucket's mutex, for goroutines
// that find the slot taken and for implicit contexts (which never take a
// slot, so that a sweep, which drops only implicit contexts, only ever
// unlinks a state and writes none). A bucket whose chain has grown to
// crowded states gets numSub sub-buckets of its own (homeBucket.sub), made
// once and kept, and its goroutines push states there, by more bits of the
// same hash, while its own chain is crowded (and its slot taken); the
// states already in its chain stay there. So a lookup walks at most about
// crowded states of the bucket's own chain, and a chain of its sub-bucket,
// which is short up to numBuckets × numSub × crowded goroutines (half a
// million). Nothing
// else grows, and nothing freezes or moves: a state stays in the chain it
// was pushed on (gstate.home) until it is freed or dropped. (Moving a
// state to another chain would send a lookup standing on it into that
// chain, past its own state.)
//
// Invariants, and why they hold:
//
//   - A slot's owner word is 0 (free) or the id of the goroutine whose
//     state it is, with no flag; only that goroutine writes it (a claim by
//     compare-and-swap from 0, a free by a store of 0), and only it writes
//     the slot's other fields. A slot is in no chain, so no walk ever
//     stands on it.
//   - A chain state's owner word is its goroutine's id, with
//     ownerImplicit if that goroutine holds an implicit context. Only a
//     goroutine writes its own id into an owner word (lookupOrClaim,
//     push), and only it clears it (free); a sweep never writes an owner
//     word, it unlinks the state of an exited goroutine from its chain. So
//     a goroutine that reads its own id in a state's owner word has found
//     its own state, however the state got there: a lookup is loads and
//     owner comparisons, validated by the id, with no lock. (Slots and chain
//     states alike.)
//   - A goroutine's state is its home bucket's slot, or in the bucket's chain
//     or its sub-bucket's, while the goroutine owns it. Only the bucket's
//     mutex holder changes a chain: it publishes a new state at the head with
//     an atomic store, after setting the state's owner and next, and unlinks a
//     state by an atomic store of its predecessor's next (or the head),
//     leaving the unlinked state's own next as it was. So a lookup walking the
//     chain without the lock, from a head it loaded itself, sees every state
//     that was in the chain before it started and stayed there (its own, in
//     particular: only its goroutine adds or frees it), and a lookup standing
//     on an unlinked state walks on into the chain. (A walk must not start at
//     the next of a head loaded earlier: a sweep may have unlinked that head
//     since, and the state behind it, perhaps the walker's own, be the head
//     now.)
//   - A chain holds no free state: a state is pushed with its owner set,
//     and a free unlinks it (under the mutex) before it marks it
//     ownerUnlinked, for good. So after any peak of goroutines the chains
//     shrink back to the states in use, and the registry keeps no free
//     state but its slots.
//   - A goroutine has at most one state: it claims one only after its
//     lookup found none, in the slot and in the chains (a walk, unless no
//     state as new as it was ever pushed: see bucket.top).
//   - Every claim makes progress: it takes the free slot (one
//     compare-and-swap of its owner), or pushes a new state under the
//     bucket's mutex, which is held only for a push or an unlink, never
//     for a wait.
//
// Locks: lookups (Var.Get, Set, entering a Run whose goroutine already has a
// state) take none. A claim that finds the slot taken, a new implicit
// context, and a free of a chain state take the bucket's mutex for one push
// or unlink. Sweeps take each bucket's mutex for the unlinks in it, and
// never block lookups.

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// Flags in gstate.owner; a goroutine id is below both.
const (
	ownerImplicit = 1 << 62 // the owner holds an implicit context
	ownerIDMask   = ownerImplicit - 1

	// ownerUnlinked is the owner word of a state taken out of its chain
	// by a free: no goroutine's, and never claimed again.
	ownerUnlinked = 1 << 63
)

// bucketBits sets the number of buckets: 4096. With G goroutines in the
// package at once, chains are G/4096 long on average, so a lookup that misses
// the head of its chain is rare below a thousand goroutines. Each state
// behind the head costs a lookup a load, a cache miss where the goroutine
// has been idle: so a bucket whose chain reaches crowded states gets numSub
// sub-buckets (see the file comment), and at 100,000 goroutines a lookup
// walks two or three states, not 24. The buckets with their slots take
// 4096 × 256 bytes, 1 MiB, of static memory (resident as goroutines write
// in them, scanned by every garbage collection), and the registry keeps no
// other free state; the sub-buckets, once made, take at most 4096 × numSub
// × 32 bytes, 2 MiB, after a peak of some 37,000 states or more (a slot and
// crowded chain states per bucket): goroutines inside Runs, or implicit
// contexts, those of exited goroutines waiting for a sweep included. Once a
// peak has passed, a crowded bucket's goroutines push on its own chain again
// (homeBucket.chainFor), so the fast paths are as before it.
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

	// top is at least the highest id that ever pushed a state here. A
	// goroutine with a higher id has no state in the chain, so its first
	// lookup need not walk it: goroutine ids only grow, so that is every
	// new goroutine's. Only a goroutine looks up its own id, and it raises
	// top before it pushes, so program order makes the test exact for it.
	// (A slot is no chain's, and raises no top.) A home bucket's top also
	// covers the pushes on its sub-buckets (homeBucket.pushFor), so that
	// a new goroutine's claim need not load sub (lookupOrClaim).
	top atomic.Uint64

	// n is the number of states in the chain: changed with mu held,
	// read without it to see whether a home bucket is crowded.
	n atomic.Int32

	mu sync.Mutex // held to push or unlink a state
}

// homeBucket is a bucket of the registry's array: a chain, the sub-buckets
// it gets when it is crowded, and its slot.
type homeBucket struct {
	bucket

	// slot is the bucket's state in place (see the file comment); its
	// home is nil (isSlot tells it from a chain state). What a new
	// goroutine's first Run reads before its claim and touches right
	// after it (head and top; the slot's owner, nextID, idsLeft, flags and
	// current) lies in the bucket's first 64 bytes, the slot's part from
	// byte 32: on 64-bit platforms, where the linker puts the registry on
	// a 32-byte boundary and a bucket is 256 bytes, that is one cache line
	// where the bucket starts one, and else two that the lookup (atHome:
	// the slot's owner, then head) reads before the claim. So the Run,
	// which usually misses the bucket (one of 4096), takes its misses
	// before its claim's locked instruction, not after it, where loads
	// wait for it; and not a bucket's and then a state's elsewhere. (A
	// slot's free writes only those fields too: see registry.free.)
	slot gstate

	// sub is nil until the bucket's chain has held crowded states, then
	// its sub-buckets, for good: a goroutine whose home this is pushes
	// its state on sub[subIndex(id)] while the chain is crowded and the
	// slot is taken (homeBucket.chainFor).
	sub atomic.Pointer[[numSub]bucket]

	_ [256 - slotOffset - unsafe.Sizeof(gstate{}) - unsafe.Sizeof(atomic.Pointer[[numSub]bucket]{})]byte // 256 bytes in all
}

// slotOffset is the offset of homeBucket.slot on every platform (gstate's
// alignment, 8 bytes, puts it there on 32-bit ones too).
const slotOffset = 32

// The slot is where the padding expects it, and its owner word, read and
// changed with 64-bit atomics, 8-byte aligned: the registry is (as every
// variable holding 64-bit atomics), and buckets are 256 bytes apart. (An
// index out of range fails the build, on each GOARCH: GOARCH=386 go vet.)
var _ = [1]int{}[unsafe.Offsetof(homeBucket{}.slot)-slotOffset]
var _ = [1]int{}[unsafe.Sizeof(homeBucket{})-256]
var _ = [1]int{}[(unsafe.Offsetof(homeBucket{}.slot)+unsafe.Offsetof(gstate{}.owner))%8]

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

// chainFor returns the chain on which goroutine id, whose home bucket is
// hb, pushes a state: hb's own while it is shorter than crowded (always,
// once a peak has passed), else id's sub-bucket.
func (hb *homeBucket) chainFor(id uint64) *bucket {
	if sub := hb.sub.Load(); sub != nil && hb.n.Load() >= crowded {
		return &sub[subIndex(id)]
	}
	return &hb.bucket
}

// find returns the state in b's chain whose owner is id, or nil: a walk
// from a head it loads itself (see lookupSlow), unless no goroutine as
// high as id ever pushed a state on b.
func (b *bucket) find(id uint64) *gstate {
	if id > b.top.Load() {
		return nil // never pushed here: see bucket.top
	}
	for gs := b.head.Load(); gs != nil; gs = gs.next.Load() {
		if atomic.LoadUint64(&gs.owner)&^ownerImplicit == id {
			return gs
		}
	}
	return nil
}

// atHome returns the state of the goroutine with id if it is its bucket's
// slot or the head of its chain, else nil: the fast path of a lookup, small
// enough to inline. Only the goroutine with id may look up id (see the file
// comment).
func (r *registry) atHome(id uint64) *gstate {
	hb := r.bucketOf(id)
	if atomic.LoadUint64(&hb.slot.owner) == id { // a slot's owner has no flag
		return &hb.slot
	}
	gs := hb.head.Load()
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
	if atomic.LoadUint64(&hb.slot.owner) == id {
		return &hb.slot
	}
	if sub := hb.sub.Load(); sub != nil {
		if gs := sub[subIndex(id)].find(id); gs != nil {
			return gs
		}
	}
	return hb.find(id)
}

// lookupOrClaim returns the state of the calling goroutine, whose id is id
// and for which atHome found none, claiming one if it has none: the slow
// path of entering a Run, the rest of the lookup and the claim in one call,
// so that a goroutine's outermost Run, which usually takes its bucket's
// free slot, makes one call for it.
//
//go:noinline
func (r *registry) lookupOrClaim(id uint64) *gstate {
	hb := r.bucketOf(id)
	// A home bucket's top covers its sub-buckets' pushes too (pushFor),
	// so a new goroutine neither walks nor loads sub.
	if id <= hb.top.Load() {
		if gs := r.lookupSlow(id); gs != nil {
			return gs
		}
	}
	// The goroutine has no state, so it may take the slot: as no walk
	// ever stands on a slot, taking it needs no top. (If the slot is its
	// own, a caller skipped atHome: that is no second claim either.)
	if atomic.CompareAndSwapUint64(&hb.slot.owner, 0, id) || atomic.LoadUint64(&hb.slot.owner) == id {
		return &hb.slot
	}
	return hb.pushFor(id)
}

// pushFor pushes a new state for owner, a goroutine of hb that has none, on
// hb.chainFor's chain, raising hb's top first also when that chain is a
// sub-bucket's, so that lookupOrClaim's test of hb's top is exact.
func (hb *homeBucket) pushFor(owner uint64) *gstate {
	id := owner & ownerIDMask
	if id > hb.top.Load() {
		hb.raiseTop(id)
	}
	return hb.chainFor(id).push(owner)
}

// acquireImplicit makes a state, marked ownerImplicit, for the calling
// goroutine, which has none; id is the goroutine's id. It is the slow path
// of a Set outside any Run (newImplicit); entering a Run has its own,
// lookupOrClaim. The state is pushed on a chain, never put in a slot: see
// the file comment.
//
//go:noinline
func (r *registry) acquireImplicit(id uint64) *gstate {
	gs := r.bucketOf(id).pushFor(id | ownerImplicit)
	if r.implicit.Add(1) >= r.sweepAt.Load() {
		r.maybeSweep()
	}
	return gs
}

// raiseTop raises b.top to id, if it is lower.
//
//go:noinline
func (b *bucket) raiseTop(id uint64) {
	for t := b.top.Load(); id > t && !b.top.CompareAndSwap(t, id); t = b.top.Load() {
	}
}

// push makes a new state for owner, a goroutine that has none, at the head
// of b's chain: a claim's slow path. It raises top first (see bucket.top).
//
//go:noinline
func (b *bucket) push(owner uint64) *gstate {
	id := owner & ownerIDMask
	if id > b.top.Load() {
		b.raiseTop(id)
	}
	gs := &gstate{owner: owner, home: b}
	b.mu.Lock()
	gs.next.Store(b.head.Load())
	b.head.Store(gs) // publishes gs with its owner, home and next
	n := b.n.Add(1)
	b.mu.Unlock()
	if n >= crowded {
		reg.crowd(id)
	}
	return gs
}

// crowd gives the home bucket of goroutine id its sub-buckets, if it has
// none and its own chain is crowded: later pushes go there. The states in
// the chain stay; see the file comment.
//
//go:noinline
func (r *registry) crowd(id uint64) {
	hb := r.bucketOf(id)
	if hb.n.Load() >= crowded && hb.sub.Load() == nil {
		hb.sub.CompareAndSwap(nil, new([numSub]bucket))
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
// it clears the fields, then frees the state in place if it is a slot, or
// unlinks it from its chain. Every way through makes a locked instruction
// before it returns (the store of the owner word; the bucket's mutex):
// exit's leaveBeforeFree, a release store just before it, relies on that
// (word.go).
func (r *registry) free(gs *gstate, owner uint64) {
	if isSlot(gs) {
		// A slot never holds an implicit context (see the file
		// comment), so its implicit and dropPending are clear already:
		// the writes stay on the cache lines a Run touched.
		gs.current = nil
		if gs.hooked {
			gs.hookCtx, gs.hooked = nil, false
		}
		if gs.cached {
			gs.clearCache()
		}
		// The atomic store orders the writes above before the next
		// owner's claim. Nobody else writes a claimed owner word, so
		// there is nothing to compare.
		atomic.StoreUint64(&gs.owner, 0)
		return
	}
	gs.current, gs.implicit, gs.dropPending, gs.hookCtx, gs.hooked = nil, nil, false, nil, false
	if gs.cached {
		gs.clearCache()
	}
	if owner&ownerImplicit != 0 {
		r.implicit.Add(-1)
	}
	b := gs.home
	b.mu.Lock()
	b.unlinkLocked(gs)
	b.mu.Unlock()
	atomic.StoreUint64(&gs.owner, ownerUnlinked)
}

// isSlot reports whether gs is a bucket's slot: whether its address lies in
// the registry's array, which costs no load (a slot's home, nil, may lie on
// a cache line a Run does not otherwise touch).
func isSlot(gs *gstate) bool {
	return uintptr(unsafe.Pointer(gs))-uintptr(unsafe.Pointer(&reg.buckets)) < unsafe.Sizeof(reg.buckets)
}

// eachState calls fn with each state in use and its owner word, and with
// whether it is neither a slot nor its chain's head (overflow). States
// claimed or freed meanwhile may or may not be seen.
func (r *registry) eachState(fn func(gs *gstate, owner uint64, overflow bool)) {
	for i := range r.buckets {
		if o := atomic.LoadUint64(&r.buckets[i].slot.owner); o != 0 {
			fn(&r.buckets[i].slot, o, false)
		}
	}
	r.eachBucket(func(b *bucket) {
		head := b.head.Load()
		for gs := head; gs != nil; gs = gs.next.Load() {
			// A chain holds no free state (see the file comment): a
			// state unlinked meanwhile is ownerUnlinked.
			if o := atomic.LoadUint64(&gs.owner); o&ownerUnlinked == 0 {
				fn(gs, o, gs != head)
			}
		}
	})
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
// is owner, from its chain (an implicit state is never a slot), and reports
// whether it did. Only a sweep calls it, with sweepMu held; it writes
// nothing of gs, which goes to the garbage collector with its context.
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
