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
	var most, peakG atomic.Int64
	raise := func(a *atomic.Int64, n int64) {
		for m := a.Load(); n > m && !a.CompareAndSwap(m, n); m = a.Load() {
		}
	}
	for i := range goroutines {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			raise(&peakG, int64(runtime.NumGoroutine()))
			v.Set(make([]byte, size))
			raise(&peakG, int64(runtime.NumGoroutine()))
			got, _ := v.Get()
			if len(got) != size {
				t.Errorf("Get after Set: %d bytes", len(got))
			}
			if i%1000 == 0 {
				raise(&most, reg.implicit.Load())
			}
		})
	}
	wg.Wait()
	after := heapInUse()
	growth := int64(after) - int64(before)
	all, implicit := registryEntries()
	t.Logf("heap before %d KiB, after %d KiB, growth %d KiB (retaining all values: %d KiB); registry entries %d (implicit %d, most seen %d, peak goroutines %d); sweeps %d",
		before>>10, after>>10, growth>>10, goroutines*size>>10, all, implicit, most.Load(), peakG.Load(), registrySweeps()-sweepsBefore)
	assert.Less(t, growth, int64(goroutines*size/20), "heap growth must stay far below the values' total")
	// A sweep is due at max(minSweep, 2 × goroutines) implicit entries,
	// goroutines counted when it is checked; on a busy machine many
	// goroutines may be exiting at a time, so the bound is the rule's at
	// the peak seen, with room for goroutines that came and went between
	// a check and the nearest sample.
	bound := 2*(peakG.Load()+64) + 2*minSweep
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
