package contextvars

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petermattis/goid"
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
	reg.sweepMu.Lock()
	defer reg.sweepMu.Unlock()
	return reg.sweeps
}

// sweepNow drops the states of exited goroutines at once.
func sweepNow() {
	reg.sweepMu.Lock()
	defer reg.sweepMu.Unlock()
	for !reg.sweepLocked() {
		// The traceback did not fit; the next one has room.
	}
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestGoroutineID_matchesStack checks goid.Get against the id runtime.Stack
// prints, on many goroutines: it breaks if a Go release moves g.goid.
func TestGoroutineID_matchesStack(t *testing.T) {
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			var buf [64]byte
			want := goid.ExtractGID(buf[:runtime.Stack(buf[:], false)])
			assert.Equal(t, uint64(want), goroutineID())
		})
	}
	wg.Wait()
}

// TestGoroutineID_distinct checks that live goroutines have distinct ids and
// that a sweep's listing finds them all.
func TestGoroutineID_distinct(t *testing.T) {
	const n = 200
	ids := make(chan uint64, n)
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			ids <- goroutineID()
			<-release
		})
	}
	seen := map[uint64]struct{}{}
	for range n {
		id := <-ids
		assert.NotContains(t, seen, id, "id given twice")
		seen[id] = struct{}{}
	}
	seen[goroutineID()] = struct{}{}
	reg.sweepMu.Lock()
	fit := reg.listLive(seen)
	reg.sweepMu.Unlock()
	require.True(t, fit)
	assert.Empty(t, seen, "the listing lacks live goroutines")
	close(release)
	wg.Wait()
}

// TestRegistry_implicitContextsDoNotLeak is the leak test: 200,000 goroutines
// each set a 1 KiB value outside Run and exit. Retaining them would hold
// 200 MiB; the heap must grow by far less, and the registry stay within
// its bound.
func TestRegistry_implicitContextsDoNotLeak(t *testing.T) {
	goroutines, size := 200_000, 1<<10
	if testing.Short() {
		goroutines = 50_000
	}
	v := NewVar[[]byte]("payload")
	before := heapInUse()
	sweepsBefore := registrySweeps()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	var most atomic.Int64
	for i := range goroutines {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			v.Set(make([]byte, size))
			got, _ := v.Get()
			if len(got) != size {
				t.Errorf("Get after Set: %d bytes", len(got))
			}
			if i%1000 == 0 {
				n := reg.implicit.Load()
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
			}
		})
	}
	wg.Wait()
	after := heapInUse()
	growth := int64(after) - int64(before)
	all, implicit := registryEntries()
	t.Logf("heap before %d KiB, after %d KiB, growth %d KiB (retaining all values: %d KiB); registry entries %d (implicit %d, most seen %d); sweeps %d",
		before>>10, after>>10, growth>>10, goroutines*size>>10, all, implicit, most.Load(), registrySweeps()-sweepsBefore)
	assert.Less(t, growth, int64(goroutines*size/20), "heap growth must stay far below the values' total")
	// About 64+ goroutines are alive at a time: a sweep is due at
	// max(minSweep, 2 × goroutines, 2 × kept) implicit entries.
	bound := int64(2*(runtime.NumGoroutine()+2*64) + 2*minSweep)
	assert.LessOrEqual(t, most.Load(), bound, "implicit entries stay within the sweep rule's bound")
	sweepNow()
	_, implicit = registryEntries()
	assert.Less(t, implicit, 64, "after a sweep only live goroutines' states remain")
}

// TestRegistry_reclaimsWithoutNewGoroutines: 200 goroutines each set a
// 1 MiB value outside Run, all alive at once (so no sweep pays while they
// register), then exit, and no goroutine uses the package after them. The
// timer must find them gone and reclaim the 200 MiB.
func TestRegistry_reclaimsWithoutNewGoroutines(t *testing.T) {
	const goroutines, size = 200, 1 << 20
	v := NewVar[[]byte]("payload")
	sweepNow()
	before := heapInUse()
	var set, wg sync.WaitGroup
	release := make(chan struct{})
	set.Add(goroutines)
	for range goroutines {
		wg.Go(func() {
			v.Set(make([]byte, size))
			set.Done()
			<-release
		})
	}
	set.Wait()
	close(release)
	wg.Wait()
	held := int64(heapInUse()) - int64(before)
	t.Logf("heap growth right after the goroutines exit: %d MiB", held>>20)
	start := time.Now()
	assert.Eventually(t, func() bool {
		return int64(heapInUse())-int64(before) < goroutines*size/10
	}, 10*time.Second, 20*time.Millisecond, "the values of exited goroutines are reclaimed by the timer")
	t.Logf("reclaimed after %v", time.Since(start).Round(time.Millisecond))
}

// TestRun_leavesNothing checks that goroutines whose only use is Run (or
// Call, or Go) leave no registry entry, however they leave, so that no sweep
// is ever needed for them.
func TestRun_leavesNothing(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 20_000
	}
	v := NewVar[int]("v")
	liveBefore, sweepsBefore := registryLive(), registrySweeps()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			defer func() { _ = recover() }()
			switch i % 5 {
			case 0:
				_ = New().Run(func() error { v.Set(i); return nil })
			case 1:
				_, _ = Call(New(), func() (int, error) { v.Set(i); return v.GetOr(0), nil })
			case 2:
				_ = New().Run(func() error { v.Set(i); runtime.Goexit(); return nil })
			case 3:
				_ = New().Run(func() error { v.Set(i); panic("boom") })
			case 4:
				// Nested Runs, the inner one the outermost's copy.
				_ = New().Run(func() error {
					v.Set(i)
					return CopyContext().Run(func() error { v.Set(-i); return nil })
				})
			}
			all, _ := registryEntries()
			if i%997 == 0 && all > 64+liveBefore+8 {
				t.Errorf("%d registry entries while at most 64 goroutines run", all)
			}
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, registryLive(), liveBefore, "no registry entry left behind")
	assert.Equal(t, sweepsBefore, registrySweeps(), "no sweep was needed")
}

// TestGo_leavesNothing checks that 1,000,000 Go calls leave no registry
// entries and bounded memory.
func TestGo_leavesNothing(t *testing.T) {
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	v := NewVar[int]("v")
	before := heapInUse()
	liveBefore, sweepsBefore := registryLive(), registrySweeps()
	churn(n, func(f func()) { Go(f) }, func(i int) { v.Set(i) })
	after := heapInUse()
	t.Logf("%d Go calls: heap growth %d KiB, registry entries %d -> %d", n, (int64(after)-int64(before))>>10, liveBefore, registryLive())
	assert.Less(t, int64(after)-int64(before), int64(8<<20), "heap growth is bounded")
	// wg.Done runs inside fn, before Run's exit frees the state: allow
	// a moment for the last ones.
	assert.Eventually(t, func() bool { return registryLive() <= liveBefore }, 10*time.Second, time.Millisecond)
	assert.Equal(t, sweepsBefore, registrySweeps(), "Go removed the entries; no sweep was needed")
}

// TestRegistry_growsUnderLoad makes many goroutines register at once, while
// others are inside Run and reading their own vars, so that tables grow
// and are swept while lookups and claims run: every goroutine must keep
// seeing its own values.
func TestRegistry_growsUnderLoad(t *testing.T) {
	const rounds, perRound = 5, 2000
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

// TestRun_cacheDropsReplacedValue: inside Run, Get fills the lookup cache
// and Set replaces the value; the replaced value must be garbage once its
// token is, while the goroutine stays inside Run.
func TestRun_cacheDropsReplacedValue(t *testing.T) {
	const size = 64 << 20
	big := NewVar[[]byte]("big")
	other := NewVar[int]("other")
	require.NoError(t, New().Run(func() error {
		other.Set(1) // two vars: Get goes through the cache
		big.Set(make([]byte, size))
		before := heapInUse()
		got, _ := big.Get()
		require.Len(t, got, size)
		got = nil
		big.Set(nil)
		growth := int64(heapInUse()) - int64(before)
		t.Logf("heap change after replacing a %d MiB value read through the cache: %d KiB", size>>20, growth>>10)
		assert.Less(t, growth, int64(-size/2), "the replaced value is garbage")
		runtime.KeepAlive(got)
		return nil
	}))
}

// TestRun_cacheDoesNotOutliveRun checks that a goroutine's lookup cache
// does not keep a context's trie alive once the goroutine has left the
// Run, also when the goroutine holds an implicit context and so keeps its
// state.
func TestRun_cacheDoesNotOutliveRun(t *testing.T) {
	for _, implicit := range []bool{false, true} {
		const nvars, size = 64, 1 << 20
		before := heapInUse()
		ready, release := make(chan struct{}), make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			if implicit {
				NewVar[int]("implicit").Set(1)
			}
			vars := make([]*Var[[]byte], nvars)
			for i := range vars {
				vars[i] = NewVar[[]byte]("v")
			}
			_ = New().Run(func() error {
				for _, v := range vars {
					v.Set(make([]byte, size))
				}
				for _, v := range vars {
					if got, _ := v.Get(); len(got) != size { // fills the cache
						t.Error("Get after Set")
					}
				}
				return nil
			})
			close(ready)
			<-release
		}()
		<-ready
		growth := int64(heapInUse()) - int64(before)
		close(release)
		<-done
		t.Logf("implicit=%v: heap growth while the goroutine waits after Run: %d KiB (the context held %d KiB)", implicit, growth>>10, nvars*size>>10)
		assert.Less(t, growth, int64(nvars*size/8), "implicit=%v: the goroutine's state keeps no trie of a context it left", implicit)
	}
}
