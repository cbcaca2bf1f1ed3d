package contextvars

// Interleavings an adversarial review tried against the registry's bucket
// tops (a goroutine newer than every state of its bucket skips the chain),
// against in-place trie writes read from other goroutines (among them the
// torn snapshot that TestContext_snapshotOfReplacedRoot pins down, fixed in
// Context.release), and against the layout of a goroutine's state.

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// checkTops checks the invariant behind bucket.top: every state pushed on
// a chain has an id no higher than its bucket's top, and sits in its home
// bucket (or sub-bucket). The owner is loaded before top, as a push raises
// top before it publishes the state. It also checks that each home
// bucket's top covers the states of its sub-buckets (checkHomeTops).
func checkTops(t *testing.T) (bad int) {
	t.Helper()
	check := func(b *bucket, i, j int) {
		for gs := b.head.Load(); gs != nil; gs = gs.next.Load() {
			o := atomic.LoadUint64(&gs.owner)
			if o == 0 || o&ownerUnlinked != 0 {
				continue
			}
			id := o & ownerIDMask
			if top := b.top.Load(); id > top {
				bad++
				t.Errorf("bucket %d/%d: state of goroutine %d above top %d", i, j, id, top)
			}
			if bucketIndex(id) != uint64(i) || j >= 0 && subIndex(id) != uint64(j) {
				bad++
				t.Errorf("state of goroutine %d in bucket %d/%d, home %d/%d", id, i, j, bucketIndex(id), subIndex(id))
			}
			if gs.home != b {
				bad++
				t.Errorf("state of goroutine %d in bucket %d/%d has another home", id, i, j)
			}
		}
	}
	for i := range reg.buckets {
		hb := &reg.buckets[i]
		check(&hb.bucket, i, -1)
		if sub := hb.sub.Load(); sub != nil {
			for j := range sub {
				check(&sub[j], i, j)
			}
		}
	}
	return bad + checkHomeTops(t)
}

// TestRegistry_lowerIDClaimsAfterHigher: goroutine ids are handed out in
// per-P batches, so a goroutine with a lower id can claim a state after one
// with a higher id in its bucket. Here, with the bucket's slot held, L
// (lower id) pushes after H, then M pushes in front of L, so L's every
// lookup takes the slow path, which must
// still find L's one state: through Set outside Run, nested Runs, Reset,
// DropImplicit, and after H and M leave.
func TestRegistry_lowerIDClaimsAfterHigher(t *testing.T) {
	v := NewVar[int]("v")
	var wg sync.WaitGroup
	idL := make(chan uint64)
	goL := make(chan struct{})
	doneL := make(chan struct{})
	var errs []string
	fail := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	hIn, mIn := make(chan uint64), make(chan uint64)
	releaseH, releaseM := make(chan struct{}), make(chan struct{})

	wg.Go(func() {
		id := goroutineID()
		idL <- id
		<-goL // H holds a state of this bucket, with a higher id
		if statesOf(id) != 0 {
			fail("L has a state before its first claim")
		}
		v.Set(1) // implicit: L's claim pushes in front of H
		<-goL    // M pushed in front of L
		if reg.atHome(id) != nil {
			fail("L is still its chain's head")
		}
		if got, _ := v.Get(); got != 1 {
			fail("L behind the head: Get = %d, want 1", got)
		}
		err := New().Run(func() error {
			if n := statesOf(id); n != 1 {
				fail("L inside Run: %d states", n)
			}
			tok := v.Set(2)
			_ = New().Run(func() error {
				if _, ok := v.Get(); ok {
					fail("nested Run sees the outer value")
				}
				v.Set(3)
				if n := statesOf(id); n != 1 {
					fail("L in nested Run: %d states", n)
				}
				return nil
			})
			if got, _ := v.Get(); got != 2 {
				fail("after nested Run: %d", got)
			}
			if err := v.Reset(tok); err != nil {
				fail("Reset: %v", err)
			}
			return nil
		})
		if err != nil {
			fail("Run: %v", err)
		}
		if got, _ := v.Get(); got != 1 {
			fail("after Run: Get = %d, want 1 (implicit)", got)
		}
		close(doneL)
		<-goL // H and M left
		if got, _ := v.Get(); got != 1 {
			fail("after H and M left: Get = %d, want 1", got)
		}
		if !DropImplicit() {
			fail("DropImplicit found nothing")
		}
		if n := statesOf(id); n != 0 {
			fail("after DropImplicit: %d states", n)
		}
		_ = New().Run(func() error {
			if n := statesOf(id); n != 1 {
				fail("Run after drop: %d states", n)
			}
			return nil
		})
		if n := statesOf(id); n != 0 {
			fail("after the last Run: %d states", n)
		}
	})
	low := <-idL
	// spawnHigher starts goroutines until one with a higher id than low in
	// low's bucket, which enters a Run, reports its id and waits.
	spawnHigher := func(in chan uint64, release chan struct{}) uint64 {
		for {
			match := make(chan bool)
			wg.Go(func() {
				id := goroutineID()
				if id <= low || bucketIndex(id) != bucketIndex(low) {
					match <- false
					return
				}
				match <- true
				_ = New().Run(func() error {
					v.Set(-int(id))
					in <- id
					<-release
					if got, _ := v.Get(); got != -int(id) {
						fail("goroutine %d sees %d", id, got)
					}
					return nil
				})
			})
			if <-match {
				return <-in
			}
		}
	}
	// The slot held, so that H, L and M go on the chain (H's push raises
	// top above L's id before L pushes).
	defer holdSlot(t, bucketIndex(low))()
	h := spawnHigher(hIn, releaseH)
	goL <- struct{}{}
	// Wait until L has its state (it is then the head).
	for statesOf(low) == 0 {
		runtime.Gosched()
	}
	m := spawnHigher(mIn, releaseM)
	t.Logf("L=%d H=%d M=%d share bucket %d", low, h, m, bucketIndex(low))
	goL <- struct{}{}
	<-doneL
	close(releaseH) // H is behind the head: unlinked
	close(releaseM) // M is the head: unlinked
	// Wait for both to leave.
	for statesOf(h)+statesOf(m) != 0 {
		runtime.Gosched()
	}
	goL <- struct{}{}
	wg.Wait()
	assert.Empty(t, errs)
	checkTops(t)
}

// TestRegistry_topsUnderChurn: goroutines of few buckets churn through every
// way in and out of the registry (Run, nested Run, Set outside Run and then
// Run, DropImplicit, panic and Goexit out of a Run, GoIn), each checking it
// sees its own values, while a checker walks the chains for states above
// their bucket's top and a sweeper drops the exited goroutines' implicit
// states.
func TestRegistry_topsUnderChurn(t *testing.T) {
	v := NewVar[uint64]("v")
	const workers = 16
	iters := 300
	var wg sync.WaitGroup
	var stop atomic.Bool
	var bad atomic.Int64
	var checkers sync.WaitGroup
	checkers.Go(func() {
		for !stop.Load() {
			if checkTops(t) > 0 {
				bad.Add(1)
				return
			}
			runtime.Gosched()
		}
	})
	checkers.Go(func() {
		for !stop.Load() {
			sweepNow()
			runtime.Gosched()
		}
	})
	check := func(want uint64, where string) {
		if got, ok := v.Get(); !ok || got != want {
			bad.Add(1)
			t.Errorf("%s: got %d %v, want %d", where, got, ok, want)
		}
	}
	for w := range workers {
		wg.Go(func() {
			for i := range iters {
				// Each round a new goroutine, whose id grows.
				var inner sync.WaitGroup
				inner.Go(func() {
					id := goroutineID()
					switch (w + i) % 6 {
					case 0:
						_ = New().Run(func() error {
							v.Set(id)
							_ = New().Run(func() error { v.Set(id + 1); check(id+1, "nested"); return nil })
							check(id, "outer")
							return nil
						})
					case 1:
						v.Set(id) // implicit
						_ = New().Run(func() error {
							if _, ok := v.Get(); ok {
								bad.Add(1)
							}
							return nil
						})
						check(id, "implicit after Run")
					case 2:
						v.Set(id)
						c := CopyContext()
						_ = c.Run(func() error { v.Set(id + 2); check(id+2, "copy"); return nil })
						check(id, "implicit after Run")
						if !DropImplicit() {
							bad.Add(1)
						}
						if _, ok := v.Get(); ok {
							bad.Add(1)
						}
					case 3:
						func() {
							defer func() { _ = recover() }()
							_ = New().Run(func() error { v.Set(id); panic("out") })
						}()
						if _, ok := v.Get(); ok {
							bad.Add(1)
						}
					case 4:
						done := make(chan struct{})
						go func() {
							defer close(done)
							_ = New().Run(func() error { v.Set(id); runtime.Goexit(); return nil })
						}()
						<-done
					case 5:
						done := make(chan struct{})
						c := New()
						if err := GoIn(c, func() {
							defer close(done)
							v.Set(id)
							check(id, "GoIn")
						}); err != nil {
							close(done)
						}
						<-done
					}
				})
				inner.Wait()
			}
		})
	}
	wg.Wait()
	stop.Store(true)
	checkers.Wait()
	sweepNow()
	assert.Zero(t, bad.Load())
	checkTops(t)
}

// TestRegistry_reusedIDBehindHead: a goroutine id that comes back (the
// runtime's extra M of C threads' callbacks keeps one goroutine for many
// threads) must find nothing after its Run, and find its state in a Run
// again, also where its state is behind the head. Simulated at the
// registry level: claim, free, claim again with the same id while other
// ids of the bucket, higher, hold the slot or the head.
func TestRegistry_reusedIDBehindHead(t *testing.T) {
	id := goroutineID() + 1<<40 // no live goroutine has it
	var others []uint64
	for o := id + 1; len(others) < 2; o++ {
		if bucketIndex(o) == bucketIndex(id) {
			others = append(others, o)
		}
	}
	for round := range 4 {
		var gs, os1, os2 *gstate
		if round%2 == 0 {
			gs = reg.lookupOrClaim(id) // the slot, unless a goroutine of the bucket holds it
			os1 = reg.lookupOrClaim(others[0])
		} else {
			os1 = reg.lookupOrClaim(others[0]) // the slot, or so
			gs = reg.lookupOrClaim(id)
		}
		os2 = reg.lookupOrClaim(others[1]) // pushed in front of gs if it is in the chain
		require.Equal(t, gs, reg.lookupSlow(id), "round %d: found", round)
		require.Equal(t, gs, reg.lookupOrClaim(id), "round %d: found again, not claimed twice", round)
		reg.free(gs, id)
		assert.Nil(t, reg.atHome(id), "round %d: freed", round)
		assert.Nil(t, reg.lookupSlow(id), "round %d: freed", round)
		reg.free(os1, others[0])
		reg.free(os2, others[1])
		for _, o := range others {
			assert.Nil(t, reg.atHome(o))
			assert.Nil(t, reg.lookupSlow(o))
		}
	}
}

// review7Vars makes n vars.
func review7Vars(prefix string, n int) []*Var[int] {
	vs := make([]*Var[int], n)
	for i := range vs {
		vs[i] = NewVar[int](fmt.Sprintf("%s%d", prefix, i))
	}
	return vs
}

// TestContext_readersDuringInPlaceWrites: the owner of c writes in place
// (E.Set(r); a temporary Set of A and its Reset; a Set of C that adds a var
// and its Reset that removes it; B.Set(r)) while readers on other
// goroutines take snapshots (Copy, All, Merge) and single reads (Get, Len),
// and check that each snapshot is the state after some write, that reads
// never go back, and the owner checks its own reads, which go through its
// lookup cache. Sizes straddle the flat root's bound (16 vars: C's Set
// makes the 17th and turns it into a trie).
func TestContext_readersDuringInPlaceWrites(t *testing.T) {
	for _, nBase := range []int{0, 1, 5, 12, 13, 14, 29, 61, 300} {
		t.Run(fmt.Sprintf("base=%d", nBase), func(t *testing.T) {
			review7InPlace(t, nBase, 400, 2)
		})
	}
}

// TestContext_readersDuringInPlaceWritesInBubble is the same inside a
// synctest bubble.
func TestContext_readersDuringInPlaceWritesInBubble(t *testing.T) {
	for _, nBase := range []int{0, 13, 61} {
		t.Run(fmt.Sprintf("base=%d", nBase), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { review7InPlace(t, nBase, 200, 2) })
		})
	}
}

func review7InPlace(t *testing.T, nBase, rounds, readers int) {
	base := review7Vars("base", nBase)
	E, A, B, C := NewVar[int]("E"), NewVar[int]("A"), NewVar[int]("B"), NewVar[int]("C")
	const aOld = -1
	temp := func(r int) int { return -1000 - r }
	c := New()
	ready := make(chan struct{})
	var done atomic.Bool
	var mu sync.Mutex
	var errs []string
	fail := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(errs) < 20 {
			errs = append(errs, fmt.Sprintf(format, a...))
		}
	}
	// checkSnap checks a snapshot, as a map from var to value.
	checkSnap := func(where string, m map[Key]any, n int) {
		if len(m) != n {
			fail("%s: walk saw %d vars, Len %d", where, len(m), n)
		}
		for i, bv := range base {
			if m[bv] != i {
				fail("%s: base%d = %v", where, i, m[bv])
			}
		}
		e, eok := m[E].(int)
		b, bok := m[B].(int)
		a, aok := m[A].(int)
		cv, cok := m[C]
		if !eok || !bok || !aok {
			fail("%s: E, B or A missing: %v %v %v", where, m[E], m[B], m[A])
			return
		}
		if b != e && b != e-1 {
			fail("%s: torn: E=%d B=%d", where, e, b)
		}
		if a != aOld && (a != temp(e) || b != e-1 || cok) {
			fail("%s: torn: E=%d A=%d B=%d C=%v", where, e, a, b, cv)
		}
		if cok && (cv != e || a != aOld || b != e-1) {
			fail("%s: torn: E=%d A=%d B=%d C=%v", where, e, a, b, cv)
		}
		want := nBase + 3
		if cok {
			want++
		}
		if n != want {
			fail("%s: %d vars, want %d", where, n, want)
		}
	}
	snapOf := func(s *Context) (map[Key]any, int) {
		m := map[Key]any{}
		for k, val := range s.All() {
			m[k] = val
		}
		return m, s.Len()
	}
	var wg sync.WaitGroup
	for r := range readers {
		wg.Go(func() {
			<-ready
			lastE, lastB := 0, 0
			for i := 0; !done.Load(); i++ {
				switch (i + r) % 4 {
				case 0:
					m, n := snapOf(c.Copy())
					checkSnap("Copy", m, n)
				case 1:
					m := map[Key]any{}
					for k, val := range c.All() {
						m[k] = val
					}
					checkSnap("All", m, len(m))
				case 2:
					m, n := snapOf(Merge(New(), c))
					checkSnap("Merge", m, n)
				case 3:
					ev, _ := c.Get(E)
					bv, _ := c.Get(B)
					e, b := ev.(int), bv.(int)
					if e < lastE || b < lastB || b < e-1 {
						fail("reads went back: E %d→%d, B %d→%d", lastE, e, lastB, b)
					}
					lastE, lastB = e, b
					if n := c.Len(); n != nBase+3 && n != nBase+4 {
						fail("Len %d", n)
					}
					if b2, _ := E.In(c); b2 < e {
						fail("E went back: %d after %d", b2, e)
					}
				}
				if i%8 == 0 {
					runtime.Gosched()
				}
			}
		})
	}
	err := c.Run(func() error {
		for i, bv := range base {
			bv.Set(i)
		}
		E.Set(0)
		A.Set(aOld)
		B.Set(0)
		close(ready)
		get := func(v *Var[int], want int, ok bool, where string, r int) {
			if got, gok := v.Get(); got != want && ok || gok != ok {
				fail("owner, round %d, %s: %s = %d %v, want %d %v", r, where, v.Name(), got, gok, want, ok)
			}
		}
		for r := 1; r <= rounds; r++ {
			get(E, r-1, true, "before", r)
			E.Set(r)
			get(E, r, true, "E set", r)
			get(A, aOld, true, "A before", r)
			tok := A.Set(temp(r))
			get(A, temp(r), true, "A set", r)
			if err := A.Reset(tok); err != nil {
				fail("Reset A: %v", err)
			}
			get(A, aOld, true, "A reset", r)
			get(C, 0, false, "C before", r)
			tc := C.Set(r)
			get(C, r, true, "C set", r)
			get(E, r, true, "E with C", r)
			if err := tc.Reset(); err != nil {
				fail("Reset C: %v", err)
			}
			get(C, 0, false, "C reset", r)
			get(B, r-1, true, "B before", r)
			B.Set(r)
			get(B, r, true, "B set", r)
			for i, bv := range base {
				if i%7 == r%7 {
					get(bv, i, true, "base", r)
				}
			}
			if r%50 == 0 {
				// The owner snapshots itself: the next write copies.
				m, n := snapOf(CopyContext())
				checkSnap("owner's copy", m, n)
			}
			if r%16 == 0 {
				runtime.Gosched()
			}
		}
		return nil
	})
	done.Store(true)
	wg.Wait()
	require.NoError(t, err)
	assert.Empty(t, errs)
}

// TestCache_model: one goroutine sets, resets and reads many vars
// (cache slots collide: 4 slots) in a context that it snapshots now and
// then, in nested Runs and an implicit context, against a model; every
// read goes through the lookup cache, which in-place writes (root
// unchanged) must invalidate.
func TestCache_model(t *testing.T) {
	for _, n := range []int{2, 5, 16, 17, 40, 200} {
		t.Run(fmt.Sprintf("vars=%d", n), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(n), 7))
			vs := review7Vars("m", n)
			type tokRec struct {
				v   int
				tok *Token[int]
				old int
				had bool
			}
			var failed []string
			var run func(depth int, model map[int]int)
			run = func(depth int, model map[int]int) {
				var toks []tokRec
				for step := range 600 {
					i := rng.IntN(n)
					switch op := rng.IntN(10); {
					case op < 4:
						old, had := model[i]
						tok := vs[i].Set(step*1000 + depth)
						model[i] = step*1000 + depth
						toks = append(toks, tokRec{i, tok, old, had})
					case op < 6 && len(toks) > 0:
						// Reset the newest token (LIFO keeps the model exact).
						tr := toks[len(toks)-1]
						toks = toks[:len(toks)-1]
						if err := vs[tr.v].Reset(tr.tok); err != nil {
							failed = append(failed, err.Error())
						}
						if tr.had {
							model[tr.v] = tr.old
						} else {
							delete(model, tr.v)
						}
					case op == 6:
						_ = CopyContext() // freezes: the next write copies
					case op == 7 && depth < 2 && step%50 == 0:
						inner := make(map[int]int, len(model))
						for k, val := range model {
							inner[k] = val
						}
						_ = CopyContext().Run(func() error { run(depth+1, inner); return nil })
					}
					// Read a few vars twice: the second read is a cache hit.
					for range 3 {
						j := rng.IntN(n)
						for range 2 {
							got, ok := vs[j].Get()
							want, wok := model[j]
							if ok != wok || got != want {
								failed = append(failed, fmt.Sprintf("depth %d step %d: var %d = %d %v, want %d %v", depth, step, j, got, ok, want, wok))
							}
						}
					}
				}
			}
			// Inside a Run, and in the implicit context of a goroutine.
			_ = New().Run(func() error { run(0, map[int]int{}); return nil })
			done := make(chan struct{})
			go func() {
				defer close(done)
				run(0, map[int]int{})
				DropImplicit()
			}()
			<-done
			if len(failed) > 10 {
				failed = failed[:10]
			}
			assert.Empty(t, failed)
		})
	}
}

// TestGstate_alignment: the layout comment says a 192-byte state is
// 64-byte aligned, so the fields before cache share one cache line. Check
// the states the registry allocates: an implicit context's state is
// always allocated (a bucket's slot is not: see homeBucket.slot).
func TestGstate_alignment(t *testing.T) {
	var wg sync.WaitGroup
	var misaligned, slots atomic.Int64
	v := NewVar[int]("v")
	for range 64 {
		wg.Go(func() {
			v.Set(1)
			gs := state()
			if gs.home == nil {
				slots.Add(1)
			}
			if uintptr(unsafe.Pointer(gs))%64 != 0 {
				misaligned.Add(1)
			}
			DropImplicit()
		})
	}
	wg.Wait()
	assert.Zero(t, misaligned.Load())
	assert.Zero(t, slots.Load(), "an implicit context takes no slot")
}

// TestContext_snapshotOfReplacedRoot is the interleaving behind the torn
// snapshots TestContext_readersDuringInPlaceWrites finds, made
// deterministic: a reader's snapshot (Context.snapshot: load the root, then
// freeze) loads the root of c; the owner then adds a var X at the root
// (the root is copied: a new root, tagged with the same edit tag, sharing
// the old root's kids) and sets B, whose node below the root is tagged and
// shared, in place; then the reader's freeze, and its walk of the root it
// loaded. The walk sees B's new value without X, which was set before B: no
// state the context ever had. Copy, All, Keys, Values and Merge all walk
// such a root.
func TestContext_snapshotOfReplacedRoot(t *testing.T) {
	base := review7Vars("b", 40) // a trie: the root is a bitmap node
	c := New()
	loaded, written := make(chan struct{}), make(chan struct{})
	var B, X *Var[int]
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = c.Run(func() error {
			for i, v := range base {
				v.Set(i)
			}
			root := c.root.Load()
			// B: a var in a bitmap node below the root; X: a new var
			// whose slot at the root is empty.
			for _, v := range base {
				if kid := review7KidAt(root, v.c.hash()); kid != nil && kid.isBitmap() {
					B = v
					break
				}
			}
			for X == nil {
				v := NewVar[int]("X")
				if review7KidAt(root, v.c.hash()) == nil {
					X = v
				}
			}
			loaded <- struct{}{}
			<-loaded // the reader has loaded the root
			X.Set(1)
			B.Set(1000)
			written <- struct{}{}
			<-written // the reader is done
			return nil
		})
	})
	<-loaded
	// Context.snapshot, step by step, with the owner's two writes between
	// its steps.
	root := c.root.Load()
	loaded <- struct{}{}
	<-written
	c.freeze()
	snap := &Context{root: rootOf(root)}
	_, hasX := snap.Get(X)
	bv, _ := snap.Get(B)
	written <- struct{}{}
	wg.Wait()
	t.Logf("snapshot: X set: %v, B = %v", hasX, bv)
	assert.False(t, !hasX && bv == 1000, "snapshot has B's new value (set after X) but not X: a torn state")
}

// review7KidAt returns the kid of bitmap node n in the slot of hash h at
// the root's level, or nil if the slot is empty.
func review7KidAt(n *node, h uint64) *node {
	bit := uint32(1) << (h & levelMask)
	if n.bitmap()&bit == 0 {
		return nil
	}
	return n.kid(bits.OnesCount32(n.bitmap() & (bit - 1)))
}

// TestOnSwitch_hookReadsKeepTag: a hook that reads the contexts of a switch
// (as pprofvars' does) reads the goroutine's own contexts, so its reads do
// not end their edit tags (Context.valueLeaf): a Set in the outer context
// after a nested Run still changes its binding in place. And the same read
// from another goroutine does end it, so that the owner's next Set copies.
func TestOnSwitch_hookReadsKeepTag(t *testing.T) {
	v := NewVar[int]("v")
	remove := OnSwitch(func(from, to *Context) {
		if from != nil {
			from.Get(v)
		}
		if to != nil {
			to.Get(v)
		}
	})
	defer remove()
	inner, outer := New(), New()
	require.NoError(t, outer.Run(func() error {
		v.Set(0)
		allocs := testing.AllocsPerRun(100, func() {
			_ = inner.Run(func() error { return nil })
			v.Set(1)
		})
		assert.Equal(t, DroppedTokenAllocs, allocs, "a Set after a nested Run whose hooks read the outer context")
		assert.NotZero(t, outer.edit.Load(), "the outer context keeps its tag")
		done := make(chan struct{})
		go func() { outer.Get(v); close(done) }()
		<-done
		assert.Zero(t, outer.edit.Load(), "a read from another goroutine ends the tag")
		return nil
	}))
}

// TestOnSwitch_hookCtxCleared: hookCtx names a context only while hooks
// run: after a hook panics on entering a nested Run, or on leaving it, the
// Run's exit has cleared it, so that it never names a context the goroutine
// has left (which another goroutine may then write).
func TestOnSwitch_hookCtxCleared(t *testing.T) {
	for _, when := range []string{"entering", "leaving"} {
		t.Run(when, func(t *testing.T) {
			inner := New()
			remove := OnSwitch(func(from, to *Context) {
				if (when == "entering" && to == inner) || (when == "leaving" && from == inner) {
					panic("hook")
				}
			})
			defer remove()
			require.NoError(t, New().Run(func() error {
				func() {
					defer func() { assert.Equal(t, "hook", recover()) }()
					_ = inner.Run(func() error { return nil })
				}()
				assert.Nil(t, state().hookCtx)
				return nil
			}))
		})
	}
}
