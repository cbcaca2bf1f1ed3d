package contextvars

import (
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadStats counts goroutines inside Run, implicit contexts, and what
// sweeps drop.
func TestReadStats(t *testing.T) {
	sweepNow()
	base := ReadStats()
	v := NewVar[int]("v")
	const inRun, implicit = 10, 40
	entered, release := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	for i := range inRun {
		wg.Go(func() {
			_ = New().Run(func() error {
				v.Set(i)
				entered <- struct{}{}
				<-release
				return nil
			})
		})
	}
	for i := range implicit {
		wg.Go(func() {
			v.Set(i)
			entered <- struct{}{}
			<-release
		})
	}
	for range inRun + implicit {
		<-entered
	}
	s := ReadStats()
	assert.Equal(t, base.Goroutines+inRun+implicit, s.Goroutines, "goroutines in the package")
	assert.Equal(t, base.Implicit+implicit, s.Implicit, "implicit contexts")
	assert.Zero(t, s.Retained, "deprecated: always 0")
	close(release)
	wg.Wait()
	// A goroutine lives on for a moment after its wg.Done, and a sweep
	// that lists it then keeps its context: sweep until none is left.
	assert.Eventually(t, func() bool {
		sweepNow()
		s = ReadStats()
		return s.Goroutines == base.Goroutines && s.Implicit == base.Implicit
	}, 10*time.Second, time.Millisecond, "Runs left nothing, sweeps dropped the implicit contexts")
	assert.Greater(t, s.Sweeps, base.Sweeps)
	assert.GreaterOrEqual(t, s.Dropped-base.Dropped, uint64(implicit), "the exited goroutines' contexts were dropped")
	assert.Greater(t, s.SweepPauseTotal, base.SweepPauseTotal)
	assert.GreaterOrEqual(t, s.SweepPauseTotal, s.SweepPauseMax)
}

// TestReadStats_duringSweep: ReadStats does not wait for a sweep in
// progress, which may stop for seconds at scale.
func TestReadStats_duringSweep(t *testing.T) {
	v := NewVar[int]("v")
	done := make(chan struct{})
	go func() { defer close(done); v.Set(1) }() // an implicit entry: a candidate
	<-done
	listed, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	setSweepListed(func(map[uint64]*gstate) {
		once.Do(func() { close(listed); <-release })
	})
	defer setSweepListed(nil)
	swept := make(chan struct{})
	go func() { defer close(swept); sweepNow() }()
	<-listed // the sweep holds sweepMu until release
	read := make(chan Stats)
	go func() { read <- ReadStats() }()
	select {
	case <-read:
	case <-time.After(time.Minute): // a hang, not a timing
		t.Error("ReadStats waited for the sweep in progress")
	}
	close(release)
	<-swept
}

// TestForbidImplicit: while on, a Set outside any Run panics with an error
// that names the var and wraps ErrOutsideRun, and sets nothing; inside Run,
// Call and Go it changes nothing.
func TestForbidImplicit(t *testing.T) {
	v := NewVar[int]("request.id")
	defer ForbidImplicit(ForbidImplicit(true))
	done := make(chan struct{})
	go func() {
		defer close(done)
		func() {
			defer func() {
				err, _ := recover().(error)
				require.Error(t, err, "Set outside Run panics with an error")
				assert.True(t, errors.Is(err, ErrOutsideRun))
				assert.Contains(t, err.Error(), `<ContextVar name='request.id'>`)
				assert.Contains(t, err.Error(), "ForbidImplicit")
			}()
			v.Set(1)
		}()
		assert.Nil(t, state(), "nothing was registered")
		_, ok := v.Get()
		assert.False(t, ok, "nothing was set")
		require.NoError(t, New().Run(func() error {
			v.Set(2)
			got, _ := v.Get()
			assert.Equal(t, 2, got)
			return nil
		}))
		got, err := Call(New(), func() (int, error) { v.Set(3); return v.GetOr(0), nil })
		require.NoError(t, err)
		assert.Equal(t, 3, got)
		fromGo := make(chan int)
		Go(func() { v.Set(4); fromGo <- v.GetOr(0) })
		assert.Equal(t, 4, <-fromGo)
	}()
	<-done
	assert.True(t, ForbidImplicit(true), "ForbidImplicit returns the previous setting")
}

// TestRegistry_shrinksAfterBurst is defect 5 of the registry's review: after
// a burst of concurrent Runs all return, the registry keeps no entry and no
// free state outside its slots, and the heap goes back near where it was,
// but for the sub-buckets of crowded buckets, at most 2 MiB (the first
// registry kept its peak: a table of 131,072 entries and 100,000 states).
func TestRegistry_shrinksAfterBurst(t *testing.T) {
	n := 100_000
	if raceEnabled || !long() {
		n = 5_000 // the race detector allows 8,128 live goroutines
	}
	v := NewVar[[]byte]("v")
	// burst runs fn on n goroutines at once, and calls atPeak while all
	// of them are inside it.
	burst := func(fn func(inside func()), atPeak func()) {
		entered, release := make(chan struct{}, n), make(chan struct{})
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				fn(func() {
					entered <- struct{}{}
					<-release
				})
			})
		}
		for range n {
			<-entered
		}
		atPeak()
		close(release)
		wg.Wait()
	}
	// The same burst without the package first: the runtime keeps the
	// goroutines' descriptors for reuse, and they are not ours to count.
	burst(func(inside func()) { inside() }, func() {})
	sweepNow()
	base := ReadStats()
	before := heapInUse()
	var peak Stats
	burst(func(inside func()) {
		_ = New().Run(func() error {
			v.Set(nil)
			inside()
			return nil
		})
	}, func() { peak = ReadStats() })
	runtime.GC()
	after := ReadStats()
	growth := int64(heapInUse()) - int64(before)
	t.Logf("%d Runs at once: %+v; after: %+v; heap growth %d KiB", n, peak, after, growth>>10)
	assert.Equal(t, base.Goroutines+n, peak.Goroutines)
	assert.Equal(t, base.Goroutines, after.Goroutines, "no entry left")
	assert.Equal(t, base.Overflow, after.Overflow, "the chains are short again")
	assert.Zero(t, after.Retained, "no free state kept on the heap")
	// What stays on the heap: the sub-buckets of the buckets the burst
	// crowded (registry.go), made once and kept. Free states stay only in
	// the buckets' slots, which are static.
	subs := int64(numBuckets * numSub * unsafe.Sizeof(bucket{}))
	assert.Less(t, growth, int64(1<<20)+subs, "the heap is back near where it was")
}
