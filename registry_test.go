package contextvars

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// registryEntries returns the number of goroutine states in use, and how
// many of them hold implicit contexts.
func registryEntries() (all, implicit int) {
	reg.eachOwner(func(owner uint64) {
		all++
		if owner&ownerImplicit != 0 {
			implicit++
		}
	})
	return all, implicit
}

// registryLive returns the number of goroutine states in use.
func registryLive() int {
	all, _ := registryEntries()
	return all
}

// registrySweeps returns the number of sweeps done so far.
func registrySweeps() int {
	return int(ReadStats().Sweeps)
}

// registryDropped returns the number of entries sweeps have dropped.
func registryDropped() int {
	return int(ReadStats().Dropped)
}

// sweepNow drops the states of exited goroutines at once.
func sweepNow() {
	reg.sweepMu.Lock()
	defer reg.sweepMu.Unlock()
	for !reg.sweepLocked(false) {
		// The traceback did not fit; the next one has room.
	}
}

// pushExited makes a goroutine of bucket home set a var outside Run (its
// implicit state goes in front of the chain) and exit, or (free=true) run
// and leave a Run (which leaves nothing); returns its id.
func pushExited(home uint64, v *Var[int], free bool) uint64 {
	for {
		done := make(chan uint64)
		go func() {
			if bucketIndex(goroutineID()) != home {
				done <- 0
				return
			}
			if free {
				_ = New().Run(func() error { return nil })
			} else {
				v.Set(2)
			}
			done <- goroutineID()
		}()
		if a := <-done; a != 0 {
			return a
		}
	}
}

// sweepInBackground sweeps over and over on another goroutine until the
// returned stop is called, which waits for the sweep in progress.
func sweepInBackground() (stop func()) {
	done := make(chan struct{})
	var sweeps sync.WaitGroup
	sweeps.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			sweepNow()
			runtime.Gosched()
		}
	})
	return func() { close(done); sweeps.Wait() }
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// setOutsideAndExit starts n goroutines that each set v to size bytes
// outside any Run, all alive at once (so that no sweep pays while they
// register), and returns when all have exited.
func setOutsideAndExit(v *Var[[]byte], n, size int) {
	var set, wg sync.WaitGroup
	release := make(chan struct{})
	set.Add(n)
	for range n {
		wg.Go(func() {
			v.Set(make([]byte, size))
			set.Done()
			<-release
		})
	}
	set.Wait()
	close(release)
	wg.Wait()
}

// assertReclaimed waits until the heap has grown less than a tenth of held
// bytes since before, failing with msg after 10 s.
func assertReclaimed(t *testing.T, before uint64, held int, msg string) bool {
	t.Helper()
	return assert.Eventually(t, func() bool {
		return int64(heapInUse())-int64(before) < int64(held)/10
	}, 10*time.Second, 20*time.Millisecond, msg)
}

// TestRegistry_underLoad makes many goroutines register at once, while
// others are inside Run and reading their own vars, and sweeps run, so that
// claims, frees, overflow entries, lookups and drops all meet: every
// goroutine must keep seeing its own values.
func TestRegistry_underLoad(t *testing.T) {
	rounds, perRound := 5, 2000
	if !long() {
		rounds = 2
	}
	v := NewVar[int]("v")
	for r := range rounds {
		start, hold := make(chan struct{}), make(chan struct{})
		var wg sync.WaitGroup
		for i := range perRound {
			wg.Go(func() {
				<-start
				check := func(want int) {
					if got, _ := v.Get(); got != want {
						t.Errorf("round %d: goroutine %d sees %d", r, i, got)
					}
				}
				if i%3 == 0 {
					// An implicit context, which sweeps look at.
					v.Set(i)
					<-hold
					check(i)
					return
				}
				_ = New().Run(func() error {
					v.Set(i)
					<-hold
					for range 10 {
						check(i)
						runtime.Gosched()
					}
					return nil
				})
			})
		}
		close(start)
		sweeper := make(chan struct{})
		go func() {
			defer close(sweeper)
			for range 3 {
				sweepNow()
				runtime.Gosched()
			}
		}()
		time.Sleep(10 * time.Millisecond)
		close(hold)
		wg.Wait()
		<-sweeper
	}
}

// TestRegistry_runExitsDuringSweeps is defect 1 of the registry's review:
// goroutines leave their outermost Runs in a loop while sweeps drop the
// implicit contexts of exited goroutines around them. The old registry
// panicked ("freeing a goroutine state not owned") when a free met a table
// rebuild; no exit may fail, and every goroutine sees its own values.
func TestRegistry_runExitsDuringSweeps(t *testing.T) {
	const workers = 16
	iters := 2000
	if !long() {
		iters = 300
	}
	v := NewVar[int]("v")
	stop := make(chan struct{})
	var churn, sweeps, wg sync.WaitGroup
	// Exited goroutines' implicit contexts, for the sweeps to drop: a
	// bounded number, so that the churn does not crowd out the workers at
	// GOMAXPROCS 1.
	churn.Go(func() {
		for range 200 {
			select {
			case <-stop:
				return
			default:
			}
			var g sync.WaitGroup
			for i := range 64 {
				g.Go(func() { v.Set(i) })
			}
			g.Wait()
		}
	})
	sweeps.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			sweepNow()
			runtime.Gosched()
		}
	})
	for w := range workers {
		wg.Go(func() {
			for i := range iters {
				want := w*iters + i
				err := New().Run(func() error {
					v.Set(want)
					runtime.Gosched()
					if got, _ := v.Get(); got != want {
						t.Errorf("worker %d sees %d, want %d", w, got, want)
					}
					return nil
				})
				require.NoError(t, err)
				if state() != nil {
					t.Errorf("worker %d keeps a state after its outermost Run", w)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	churn.Wait()
	sweeps.Wait()
}

// holdSlot takes the slot of bucket home for a goroutine of that bucket
// parked inside a Run, so that the Runs of the bucket's other goroutines
// go on its chain (if another goroutine holds the slot already, the parked
// one is on the chain, and the slot taken all the same); release ends the
// Run.
func holdSlot(t *testing.T, home uint64) (release func()) {
	t.Helper()
	in, done := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	inBucket(home, 1, &wg, func(int) {
		_ = New().Run(func() error { close(in); <-done; return nil })
	})
	<-in
	require.NotZero(t, atomic.LoadUint64(&reg.buckets[home].slot.owner), "the slot is held")
	return func() { close(done); wg.Wait() }
}

// sameSlot starts goroutines in wg until n of them have ids that share the
// calling goroutine's home bucket, and runs body(i) on the i-th of those; the
// others exit at once.
func sameSlot(n int, wg *sync.WaitGroup, body func(i int)) {
	inBucket(bucketIndex(goroutineID()), n, wg, body)
}

// inBucket starts goroutines in wg until n of them have ids whose home
// bucket is target, and runs body(i) on the i-th of those; the others exit
// at once.
func inBucket(target uint64, n int, wg *sync.WaitGroup, body func(i int)) {
	for found := 0; found < n; {
		match := make(chan bool)
		i := found
		wg.Go(func() {
			if bucketIndex(goroutineID()) != target {
				match <- false
				return
			}
			match <- true
			body(i)
		})
		if <-match {
			found++
		}
	}
}

// TestRegistry_claimWhenSlotTaken is defect 2 of the registry's review: 17
// goroutines whose ids share a home bucket sit inside Run, and an 18th
// with the same bucket calls Run. The old registry rebuilt a table of the same
// size again and again, and the 18th could not get in for as long as the
// others stayed. Every claim must make progress, and each goroutine sees
// its own value.
func TestRegistry_claimWhenSlotTaken(t *testing.T) {
	const n = 18
	v := NewVar[int]("v")
	sweepNow() // other tests' exited goroutines' states
	base := ReadStats().Goroutines
	entered, release := make(chan int, n), make(chan struct{})
	nested, release2 := make(chan struct{}, n), make(chan struct{})
	var wg sync.WaitGroup
	sameSlot(n, &wg, func(i int) {
		err := New().Run(func() error {
			v.Set(i)
			entered <- i
			<-release
			// Now that all are in, some find their state behind the
			// head of the chain: a nested Run must find it there and
			// claim no second one.
			gs := state()
			_ = New().Run(func() error {
				if state() != gs {
					t.Errorf("goroutine %d has a second state in a nested Run", i)
				}
				nested <- struct{}{}
				<-release2
				return nil
			})
			if got, _ := v.Get(); got != i {
				t.Errorf("goroutine %d sees %d", i, got)
			}
			return nil
		})
		assert.NoError(t, err)
	})
	timeout := time.After(10 * time.Second)
	for range n {
		select {
		case <-entered:
		case <-timeout:
			close(release)
			t.Fatal("a goroutine whose home slot is taken could not enter Run")
		}
	}
	// The first took the slot, the next crowded made the bucket's chain;
	// the bucket got sub-buckets then, where the others are.
	assert.GreaterOrEqual(t, ReadStats().Overflow, crowded-1, "all but one of the bucket's own chain are behind its head")
	assert.NotNil(t, reg.bucketOf(goroutineID()).sub.Load(), "a crowded bucket gets sub-buckets")
	close(release)
	for range n {
		<-nested
	}
	assert.LessOrEqual(t, ReadStats().Goroutines, base+n, "one state per goroutine, in nested Runs too")
	close(release2)
	wg.Wait()
	_, free := chainOf(goroutineID())
	assert.Zero(t, free, "the chain keeps no free state")
}

// TestRegistry_sameBucketChurn: goroutines that share a bucket claim and
// free states over and over (in the slot, at the head of the chain and
// behind it), while sweeps drop exited goroutines' ones: a goroutine
// must never lose its state or see another's.
func TestRegistry_sameBucketChurn(t *testing.T) {
	const n = 8
	iters := 300
	if long() {
		iters = 3000
	}
	v := NewVar[int]("v")
	stopSweeps := sweepInBackground()
	start := make(chan struct{})
	var wg sync.WaitGroup
	sameSlot(n, &wg, func(g int) {
		<-start
		for i := range iters {
			want := g*iters + i
			err := New().Run(func() error {
				v.Set(want)
				runtime.Gosched()
				return New().Run(func() error {
					if _, ok := v.Get(); ok {
						t.Errorf("goroutine %d sees a value in a new context", g)
					}
					return nil
				})
			})
			assert.NoError(t, err)
			if i%3 == 0 {
				v.Set(want) // an implicit context, then gone again
				if got, _ := v.Get(); got != want {
					t.Errorf("goroutine %d sees %d, want %d", g, got, want)
				}
				dropImplicit()
			}
			if state() != nil {
				t.Errorf("goroutine %d keeps a state", g)
			}
		}
	})
	close(start)
	wg.Wait()
	stopSweeps()
}

// statesOf counts the states whose owner word is id in id's home bucket:
// its slot, and its chains (its own and its sub-bucket's).
func statesOf(id uint64) (n int) {
	if atomic.LoadUint64(&reg.bucketOf(id).slot.owner) == id {
		n++
	}
	for _, b := range chainsOf(id) {
		for gs := b.head.Load(); gs != nil; gs = gs.next.Load() {
			if atomic.LoadUint64(&gs.owner)&^ownerImplicit == id {
				n++
			}
		}
	}
	return n
}

// chainsOf returns the buckets in which goroutine id's state may be: its
// home bucket, and its sub-bucket if the home bucket is crowded.
func chainsOf(id uint64) []*bucket {
	hb := reg.bucketOf(id)
	if sub := hb.sub.Load(); sub != nil {
		return []*bucket{&hb.bucket, &sub[subIndex(id)]}
	}
	return []*bucket{&hb.bucket}
}

// TestRegistry_nestedRunBehindHead: a goroutine inside a Run whose state is
// not its chain's head (another goroutine of its bucket registered after it,
// and the bucket's slot is held) enters a nested Run. enter looked only at
// the head (atHome) before claiming, so it claimed a second state for the
// same goroutine.
func TestRegistry_nestedRunBehindHead(t *testing.T) {
	defer holdSlot(t, bucketIndex(goroutineID()))()
	firstIn, secondIn, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var behind bool
	var wg sync.WaitGroup
	var statesInNested, statesInOuter int
	var nestedAllocs float64
	sameSlot(2, &wg, func(i int) {
		switch i {
		case 0:
			_ = New().Run(func() error {
				close(firstIn)
				<-secondIn // now our state is behind the second's
				id := goroutineID()
				behind = reg.atHome(id) == nil
				statesInOuter = statesOf(id)
				_ = New().Run(func() error {
					statesInNested = statesOf(id)
					return nil
				})
				nestedAllocs = testing.AllocsPerRun(100, func() {
					_ = New().Run(func() error { return nil })
				})
				return nil
			})
			close(done)
		case 1:
			<-firstIn
			_ = New().Run(func() error {
				close(secondIn)
				<-done
				return nil
			})
		}
	})
	wg.Wait()
	assert.True(t, behind, "the state is behind the head, and not the slot")
	assert.Equal(t, 1, statesInOuter)
	assert.Equal(t, 1, statesInNested, "a nested Run uses the goroutine's one state")
	t.Logf("allocs per nested Run behind the head: %v (New() itself allocates)", nestedAllocs)
}

// chainOf returns the length of id's chains (see chainsOf) and how many of
// their states are free.
func chainOf(id uint64) (length, free int) {
	for _, b := range chainsOf(id) {
		for gs := b.head.Load(); gs != nil; gs = gs.next.Load() {
			length++
			if atomic.LoadUint64(&gs.owner) == 0 {
				free++
			}
		}
	}
	return length, free
}

// TestRegistry_runOnlyChurnKeepsNoFreeState: goroutines that share a bucket
// and only ever Run (so no sweep runs) leave no free state in their chain.
// Found by the review of issue #17, when a chain kept its free head for
// reuse: a free of the head racing with a push in front of it left a free
// state behind the head for good, and such states piled up linearly with
// the Runs. Now a chain keeps no free state at all (the bucket's slot is
// where a free state stays).
func TestRegistry_runOnlyChurnKeepsNoFreeState(t *testing.T) {
	const n = 8
	iters := 5000
	if long() {
		iters = 20000
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	var bucketID uint64
	sameSlot(n, &wg, func(g int) {
		if g == 0 {
			bucketID = goroutineID()
		}
		<-start
		for range iters {
			_ = New().Run(func() error { runtime.Gosched(); return nil })
		}
	})
	close(start)
	wg.Wait()
	length, free := chainOf(bucketID)
	t.Logf("after %d Runs on %d same-bucket goroutines: chain of %d states, %d free", n*iters, n, length, free)
	assert.Zero(t, free, "no free state in a chain")
	assert.Zero(t, atomic.LoadUint64(&reg.bucketOf(bucketID).slot.owner), "the slot is free again")
}

// TestRegistry_lookupWhileSweepDropsHead is a goroutine B inside a Run whose
// state sits behind the implicit state of an exited goroutine A of the same
// bucket, while a sweep drops A's state: B's state becomes the head between
// B's look at the head (atHome) and the walk of the rest of the chain
// (lookupSlow). A walk from the old head's next skipped B's own state: Get
// inside the Run saw nothing, and Set made B a second, implicit state, so
// that the value set inside the Run was seen after it.
func TestRegistry_lookupWhileSweepDropsHead(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("needs two Ps: one goroutine spins on its lookups while the sweeps run on another; on one P each preemption slice costs 10 ms")
	}
	trials := 300
	if raceEnabled {
		trials = 100
	}
	if long() {
		trials = 2000
	}
	v := NewVar[int]("v")
	var misses atomic.Int64
	var stop atomic.Bool
	ready, leaked := make(chan uint64), make(chan bool)
	idB, slotHeld := make(chan uint64), make(chan struct{})
	var inSlot bool
	go func() { // B: inside a Run, getting and setting
		idB <- goroutineID()
		<-slotHeld // so that B's state goes on the chain
		_ = New().Run(func() error {
			v.Set(1)
			inSlot = isSlot(state())
			ready <- goroutineID()
			for !stop.Load() {
				if _, ok := v.Get(); !ok {
					misses.Add(1)
				}
				v.Set(1)
			}
			return nil
		})
		_, ok := v.Get() // outside the Run: nothing
		leaked <- ok
	}()
	defer holdSlot(t, bucketIndex(<-idB))()
	close(slotHeld)
	home := bucketIndex(<-ready)
	require.False(t, inSlot, "B's state is on the chain")
	for range trials {
		// A: a goroutine of B's bucket sets a var outside any Run, which
		// pushes its implicit state in front of B's, and exits.
		a := pushExited(home, v, false)
		for statesOf(a) != 0 {
			sweepNow() // drops A's state: B's becomes the head
			runtime.Gosched()
		}
	}
	stop.Store(true)
	assert.False(t, <-leaked, "a value set inside the Run is seen after it")
	assert.Zero(t, misses.Load(), "Gets inside the Run that saw no value")
}

// idsOf returns n ids above every live goroutine's, in order, for which
// keep is true: ids for registry-level tests, each used by one goroutine
// only, as the registry requires.
func idsOf(n int, keep func(id uint64) bool) []uint64 {
	var ids []uint64
	for id := goroutineID() + 1<<40; len(ids) < n; id++ {
		if keep(id) {
			ids = append(ids, id)
		}
	}
	return ids
}

// TestRegistry_crowdedBucket: goroutines of one home bucket, more than
// crowded of them, sit inside Runs and implicit contexts at once. The
// bucket gets sub-buckets; every goroutine finds its own state (in the
// bucket's slot, its chain or its sub-bucket's) and value; when they are
// gone, no entry is left, and no sub-bucket keeps a free state.
func TestRegistry_crowdedBucket(t *testing.T) {
	const n = 3 * crowded
	v := NewVar[int]("v")
	sweepNow()
	base := ReadStats()
	home := bucketIndex(goroutineID())
	inside, release := make(chan uint64, n), make(chan struct{})
	var wg sync.WaitGroup
	sameSlot(n, &wg, func(i int) {
		body := func() {
			v.Set(i)
			inside <- goroutineID()
			<-release
			if got, _ := v.Get(); got != i {
				t.Errorf("goroutine %d sees %d", i, got)
			}
			_ = New().Run(func() error { // nested: the same state
				if _, ok := v.Get(); ok {
					t.Errorf("goroutine %d sees a value in a new context", i)
				}
				return nil
			})
		}
		if i%2 == 0 {
			_ = New().Run(func() error { body(); return nil })
		} else {
			body() // an implicit context
			dropImplicit()
		}
	})
	var ids []uint64
	for range n {
		ids = append(ids, <-inside)
	}
	hb := &reg.buckets[home]
	require.NotNil(t, hb.sub.Load(), "a bucket of %d goroutines is crowded", n)
	inSub := 0
	for _, id := range ids {
		assert.Equal(t, 1, statesOf(id), "goroutine %d has one state", id)
		for _, b := range chainsOf(id)[1:] {
			for gs := b.head.Load(); gs != nil; gs = gs.next.Load() {
				if atomic.LoadUint64(&gs.owner)&ownerIDMask == id {
					inSub++
					assert.Same(t, b, gs.home)
				}
			}
		}
	}
	assert.Greater(t, inSub, 0, "claims after the crowding are in sub-buckets")
	assert.LessOrEqual(t, int(hb.n.Load()), crowded+2, "the bucket's own chain stops growing near crowded")
	assert.Zero(t, checkTops(t))
	close(release)
	wg.Wait()
	after := ReadStats()
	assert.Equal(t, base.Goroutines, after.Goroutines, "no entry left")
	assert.Equal(t, base.Implicit, after.Implicit)
	for j := range hb.sub.Load() {
		b := &hb.sub.Load()[j]
		for gs := b.head.Load(); gs != nil; gs = gs.next.Load() {
			t.Errorf("sub-bucket %d keeps a state, owner %#x", j, atomic.LoadUint64(&gs.owner))
		}
	}
}

// TestRegistry_subBucketChurn is TestRegistry_sameBucketChurn in one
// sub-bucket, at the registry's level (ids that no goroutine has, each used
// by one goroutine): states of the crowded bucket's own chain stay found,
// and claims and frees in the sub-bucket, racing with one another and with
// sweeps, never lose a state or find another's.
func TestRegistry_subBucketChurn(t *testing.T) {
	iters := 2000
	if long() {
		iters = 20000
	}
	home := bucketIndex(goroutineID() + 1<<40)
	legacy := idsOf(crowded+1, func(id uint64) bool { return bucketIndex(id) == home })
	hb := &reg.buckets[home]
	var held []*gstate
	for _, id := range legacy {
		held = append(held, reg.lookupOrClaim(id))
	}
	require.NotNil(t, hb.sub.Load(), "crowded by %d states and the slot", crowded)
	sub := subIndex(legacy[len(legacy)-1] + 1)
	churners := idsOf(6, func(id uint64) bool {
		return id > legacy[len(legacy)-1] && bucketIndex(id) == home && subIndex(id) == sub
	})
	stopSweeps := sweepInBackground()
	var wg sync.WaitGroup
	for g, id := range churners {
		wg.Go(func() {
			for i := range iters {
				gs := reg.lookupOrClaim(id)
				if reg.lookupSlow(id) != gs || atomic.LoadUint64(&gs.owner) != id {
					t.Errorf("churner %d, round %d: its state is not found", g, i)
					return
				}
				if gs.home != &hb.sub.Load()[sub] {
					t.Errorf("churner %d: state not in its sub-bucket", g)
					return
				}
				runtime.Gosched()
				reg.free(gs, id)
				if reg.lookupSlow(id) != nil {
					t.Errorf("churner %d, round %d: a freed state is found", g, i)
					return
				}
			}
		})
	}
	for range iters / 10 {
		for i, id := range legacy {
			if reg.lookupSlow(id) != held[i] {
				t.Fatalf("state %d of the bucket's own chain is lost", i)
			}
		}
		runtime.Gosched()
	}
	wg.Wait()
	stopSweeps()
	for i, id := range legacy {
		reg.free(held[i], id)
	}
	sweepNow()
	b := &hb.sub.Load()[sub]
	assert.Nil(t, b.head.Load(), "the sub-bucket keeps no state")
	assert.Zero(t, b.n.Load())
}

// TestRegistry_firstRunTakesFreeSlot: a goroutine whose bucket's slot is free
// takes it for its Run (allocating no state), frees it as the Run returns,
// and its nested Runs use it too; a Set outside any Run never takes it.
func TestRegistry_firstRunTakesFreeSlot(t *testing.T) {
	v := NewVar[int]("v")
	for tries := 0; ; tries++ {
		require.Less(t, tries, 1000, "no goroutine found its bucket's slot free")
		done := make(chan bool)
		go func() {
			id := goroutineID()
			hb := reg.bucketOf(id)
			if atomic.LoadUint64(&hb.slot.owner) != 0 {
				done <- false // another goroutine's: try another id
				return
			}
			var inRun, inNested *gstate
			_ = New().Run(func() error {
				inRun = state()
				v.Set(1)
				_ = New().Run(func() error { inNested = state(); return nil })
				return nil
			})
			if inRun != &hb.slot {
				// Taken meanwhile by another test's goroutine: try
				// another id.
				done <- false
				return
			}
			assert.Equal(t, inRun, inNested, "a nested Run uses the slot")
			assert.Zero(t, atomic.LoadUint64(&hb.slot.owner), "freed as the Run returns")
			assert.Nil(t, hb.slot.current)
			v.Set(2) // implicit: on the chain, not in the free slot
			gs := state()
			assert.NotEqual(t, &hb.slot, gs)
			assert.False(t, isSlot(gs))
			assert.Zero(t, atomic.LoadUint64(&hb.slot.owner))
			assert.True(t, dropImplicit())
			assert.Nil(t, state())
			done <- true
		}()
		if <-done {
			return
		}
	}
}
