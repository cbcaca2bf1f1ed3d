package contextvars

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestSweep_dropsExitedGoroutinesContexts is the leak test: 200,000 goroutines
// each set a 1 KiB value outside Run and exit. Retaining them would hold
// 200 MiB; the heap must grow by far less, and the registry stay within
// its bound.
func TestSweep_dropsExitedGoroutinesContexts(t *testing.T) {
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

// TestSweep_timerReclaimsWithoutNewGoroutines: 200 goroutines each set a
// 1 MiB value outside Run, all alive at once (so no sweep pays while they
// register), then exit, and no goroutine uses the package after them. The
// timer must find them gone and reclaim the 200 MiB.
func TestSweep_timerReclaimsWithoutNewGoroutines(t *testing.T) {
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
