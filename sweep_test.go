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
	if !long() {
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
	stats := ReadStats()
	t.Logf("heap before %d KiB, right after %d KiB, growth %d KiB (retaining all values: %d KiB); registry entries %d (implicit %d, most seen %d, peak goroutines %d); sweeps %d, pauses %v in all, longest %v",
		before>>10, after>>10, growth>>10, goroutines*size>>10, all, implicit, most.Load(), peakG.Load(), registrySweeps()-sweepsBefore, stats.SweepPauseTotal, stats.SweepPauseMax)
	// Sweeps are paced (sweepPace), so the entries made within one pacing
	// interval may wait for the next sweep: the timer's, once the last
	// goroutines have exited.
	assert.Eventually(t, func() bool {
		return int64(heapInUse())-int64(before) < int64(goroutines*size/20)
	}, 10*time.Second, 20*time.Millisecond, "heap growth must fall far below the values' total")
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
	setOutsideAndExit(v, goroutines, size)
	held := int64(heapInUse()) - int64(before)
	t.Logf("heap growth right after the goroutines exit: %d MiB", held>>20)
	start := time.Now()
	assertReclaimed(t, before, goroutines*size, "the values of exited goroutines are reclaimed by the timer")
	t.Logf("reclaimed after %v", time.Since(start).Round(time.Millisecond))
}

// TestSweep_paced: a sweep starts only when the time since the last one
// ended is at least sweepPace times that sweep's pause.
func TestSweep_paced(t *testing.T) {
	end := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		lastEnd   time.Time
		pause     time.Duration
		now       time.Time
		paced     bool
		remaining time.Duration
	}{
		{"no sweep yet", time.Time{}, 0, end, false, 0},
		{"right after", end, 10 * time.Millisecond, end, true, 90 * time.Millisecond},
		{"within the interval", end, 10 * time.Millisecond, end.Add(40 * time.Millisecond), true, 50 * time.Millisecond},
		{"at the interval's end", end, 10 * time.Millisecond, end.Add(90 * time.Millisecond), false, 0},
		{"long after", end, 10 * time.Millisecond, end.Add(time.Second), false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sweeper{lastEnd: tc.lastEnd, lastPause: tc.pause}
			var wait time.Duration
			assert.Equal(t, tc.paced, s.paced(tc.now, &wait))
			assert.Equal(t, tc.remaining, wait)
		})
	}
}

// exitedWithImplicit starts n goroutines that each set v outside Run and
// exit, and waits for them.
func exitedWithImplicit(n int, v *Var[[]byte], size int) {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { v.Set(make([]byte, size)) })
	}
	wg.Wait()
}

// TestSweep_pacingDefersButReclaims: right after a sweep whose pause was
// long, entries of exited goroutines wait (no sweep starts within the
// pacing interval, and the goroutines that register do not wait), and the
// timer reclaims them once the interval has passed.
func TestSweep_pacingDefersButReclaims(t *testing.T) {
	v := NewVar[[]byte]("payload")
	sweepNow()
	reg.sweepMu.Lock()
	reg.lastEnd, reg.lastPause = time.Now(), 20*time.Millisecond // next sweep in 180 ms
	reg.sweepMu.Unlock()
	sweeps := ReadStats().Sweeps
	exitedWithImplicit(4*minSweep, v, 1)
	assert.Equal(t, sweeps, ReadStats().Sweeps, "no sweep within the pacing interval")
	assert.Eventually(t, func() bool {
		_, implicit := registryEntries()
		return implicit < minSweep
	}, 10*time.Second, 10*time.Millisecond, "the timer sweeps once pacing allows")
}

// TestSweep_registrantsDoNotWait: while a sweep (or a check for one) holds
// the sweeper, goroutines that make implicit contexts go on.
func TestSweep_registrantsDoNotWait(t *testing.T) {
	v := NewVar[[]byte]("payload")
	reg.sweepMu.Lock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		exitedWithImplicit(8*minSweep, v, 1)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Error("goroutines making implicit contexts waited for the sweeper")
	}
	reg.sweepMu.Unlock()
	<-done
	sweepNow()
}

// TestSweep_skipsWhenNoGoroutineExited: a check that finds implicit entries
// due for a sweep, but no goroutine exited since the last sweep, does not
// sweep (runtime/metrics tells).
func TestSweep_skipsWhenNoGoroutineExited(t *testing.T) {
	if _, ok := exitedGoroutines(); !ok {
		t.Skip("the runtime does not count goroutines created")
	}
	v := NewVar[[]byte]("payload")
	release := make(chan struct{})
	var wg, set sync.WaitGroup
	set.Add(4 * minSweep)
	for range 4 * minSweep {
		wg.Go(func() {
			v.Set(nil)
			set.Done()
			<-release
		})
	}
	set.Wait()
	// Goroutines of the runtime or the test framework may exit meanwhile:
	// judge an attempt only if none did.
	judged := false
	for range 100 {
		reg.sweepMu.Lock()
		reg.exited, _ = exitedGoroutines()
		before, sweeps := reg.exited, reg.sweeps
		reg.lastEnd = time.Time{}
		reg.checkLocked(false, true)
		after := reg.sweeps
		reg.sweepMu.Unlock()
		if now, _ := exitedGoroutines(); now == before {
			assert.Equal(t, sweeps, after, "no sweep: no goroutine exited since the last one")
			judged = true
			break
		}
	}
	close(release)
	wg.Wait()
	assert.True(t, judged, "goroutines kept exiting")
	sweepNow()
}

// TestSweep_notOnTheSettingGoroutine: the Set that finds a sweep due does
// not sweep on its own goroutine, which may hold locks of its own and would
// wait for a traceback of every goroutine (about a second at 100,000 of
// them: the scale review); the timer's goroutine sweeps, at once.
func TestSweep_notOnTheSettingGoroutine(t *testing.T) {
	v := NewVar[int]("v")
	sweepNow()
	_, base := registryEntries()
	// The setting goroutine's id is stored before its Set; a sweep
	// listed on it is recorded. (The timer may also sweep the entries
	// below before the Set: then the Set finds nothing due, and the test
	// checks only that nothing swept on it.)
	var setterID atomic.Uint64
	var onSetter atomic.Bool
	setSweepListed(func(map[uint64]*gstate) {
		if goroutineID() == setterID.Load() {
			onSetter.Store(true)
		}
	})
	defer setSweepListed(nil)
	// Enough entries of exited goroutines for the count rule, whatever
	// else runs (a sweep then is due, cheap or not).
	var wg sync.WaitGroup
	for range max(4*minSweep, 2*runtime.NumGoroutine()+minSweep) {
		wg.Go(func() { v.Set(1) }) // an implicit context, then gone
	}
	wg.Wait()
	reg.sweepMu.Lock()
	reg.lastEnd = time.Time{} // unpaced
	reg.sweepAt.Store(0)      // due at the next Set
	reg.sweepMu.Unlock()
	done := make(chan struct{})
	go func() {
		setterID.Store(goroutineID())
		v.Set(2) // finds the sweep due
		close(done)
		dropImplicit()
	}()
	<-done
	if !assert.Eventually(t, func() bool {
		_, implicit := registryEntries()
		return implicit <= base
	}, 10*time.Second, time.Millisecond, "the timer reclaimed the exited goroutines' entries") {
		reg.sweepMu.Lock()
		g := int64(runtime.NumGoroutine())
		exited, _ := exitedGoroutines()
		t.Logf("implicit %d (base %d), kept %d, sweepAt %d, timer armed %v, period %v, last pause %v over %d goroutines, cheap(%d) %v, exited %d (at last sweep %d), sweeps %d",
			reg.implicit.Load(), base, reg.kept, reg.sweepAt.Load(), reg.timerArmed, reg.period, reg.lastPause, reg.lastG, g, reg.cheap(g), exited, reg.exited, reg.sweeps)
		reg.sweepMu.Unlock()
	}
	assert.False(t, onSetter.Load(), "the setting goroutine swept")
}

// TestSweep_cheapAfterTinySweep: a sweep in a process of a few goroutines,
// whose pause is mostly the fixed cost of stopping the world, must not make
// later sweeps of a few hundred goroutines look dear: a handful of exited
// goroutines' entries are still reclaimed by the timer (a review found them
// held until 32 piled up).
func TestSweep_cheapAfterTinySweep(t *testing.T) {
	if inBubble() {
		t.Skip("the timer is armed outside bubbles only")
	}
	v := NewVar[int]("v")
	sweepNow()
	_, base := registryEntries()
	reg.sweepMu.Lock()
	reg.lastPause, reg.lastG = 200*time.Microsecond, 3 // 67 µs per goroutine, measured on 3
	reg.sweepMu.Unlock()
	stop := make(chan struct{})
	defer close(stop)
	for range 300 {
		go func() { <-stop }()
	}
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() { v.Set(1) }) // an implicit context, then gone
	}
	wg.Wait()
	assert.Eventually(t, func() bool {
		_, implicit := registryEntries()
		return implicit <= base
	}, 10*time.Second, 10*time.Millisecond, "the timer reclaimed 5 exited goroutines' entries with 300 alive")
}
