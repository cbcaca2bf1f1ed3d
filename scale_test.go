package contextvars

import (
	"fmt"
	"math"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// The scale test: the package in a process with many goroutines, most of
// them idle, and thousands born and gone, as in a server. Each scenario runs
// the same churn with and without the package and reads the stop-the-world
// pauses that are not the collector's from runtime/metrics. It checks what
// must hold (no pause, or no sweep, where none is due; the registry within
// its bound) and logs wall times and pauses, which bench/RESULTS.md keeps:
// speed is not asserted in tests.

// pauses reads the histogram of non-GC stop-the-world pauses.
func pauses() *metrics.Float64Histogram {
	s := []metrics.Sample{{Name: "/sched/pauses/total/other:seconds"}}
	metrics.Read(s)
	return s[0].Value.Float64Histogram()
}

// pauseStats is what happened between two readings of pauses: how many
// pauses, the longest (the upper bound of its bucket) and their total (by
// bucket midpoints).
type pauseStats struct {
	n          uint64
	max, total time.Duration
}

func pausesSince(before *metrics.Float64Histogram) pauseStats {
	after := pauses()
	var st pauseStats
	for i, c := range after.Counts {
		d := c - before.Counts[i]
		if d == 0 {
			continue
		}
		lo, hi := after.Buckets[i], after.Buckets[i+1]
		if math.IsInf(lo, -1) {
			lo = 0
		}
		if math.IsInf(hi, 1) {
			hi = lo
		}
		st.n += d
		st.max = time.Duration(hi * 1e9)
		st.total += time.Duration(float64(d) * (lo + hi) / 2 * 1e9)
	}
	return st
}

// idle starts n goroutines that wait until the returned func is called, as
// a server's idle connections do.
func idle(n int) (stop func()) {
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { <-release })
	}
	return func() { close(release); wg.Wait() }
}

// churn runs n goroutines, at most 64 at a time, each calling work(i), and
// returns the wall time.
func churn(n int, start func(func()), work func(i int)) time.Duration {
	begin := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		start(func() {
			defer wg.Done()
			defer func() { <-sem }()
			work(i)
		})
	}
	wg.Wait()
	return time.Since(begin)
}

func goStatement(f func()) { go f() }

// scaleResult is one row of the scenario table.
type scaleResult struct {
	name               string
	idle, goroutines   int
	wall, baseline     time.Duration
	pauses             pauseStats
	sweeps             int
	traceMax, traceAll time.Duration
	solo               time.Duration // one runtime.Stack(all) of the same goroutines, alone
	maxImplicit, bound int64
	gc, baseGC         uint64 // collections during the churn, with and without the package
}

// gcCycles reads the number of completed collections. With 100,000 idle
// goroutines each cycle scans every stack, so the cycles a churn triggers
// explain much of its wall time.
func gcCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// soloTraceback times one runtime.Stack of all goroutines, as a sweep
// takes it.
func soloTraceback() time.Duration {
	buf := make([]byte, 64<<20)
	start := time.Now()
	runtime.Stack(buf, true)
	return time.Since(start)
}

func TestScale(t *testing.T) {
	if testing.Short() {
		t.Skip("the scale test runs without -short")
	}
	if raceEnabled {
		t.Skip("the race detector allows 8128 live goroutines; the scale test needs 100,000")
	}
	v := NewVar[int]("v")
	var sink atomic.Int64
	plain := func(i int) {
		x := i
		sink.Add(int64(x))
	}

	var maxImplicit atomic.Int64
	observe := func() {
		n := reg.implicit.Load()
		for m := maxImplicit.Load(); n > m && !maxImplicit.CompareAndSwap(m, n); m = maxImplicit.Load() {
		}
	}

	scenario := func(name string, idleN, n int, start func(func()), work func(int)) scaleResult {
		stop := idle(idleN)
		defer stop()
		runtime.GC()
		gc0 := gcCycles()
		baseline := churn(n, goStatement, plain)
		baseGC := gcCycles() - gc0
		sweepNow()
		runtime.GC()
		maxImplicit.Store(0)
		sweeps := registrySweeps()
		reg.sweepMu.Lock()
		reg.statsMu.Lock()
		traceMax, traceAll, sweepMax := reg.tracebackMax, reg.tracebackTotal, reg.sweepMax
		reg.tracebackMax, reg.sweepMax = 0, 0
		reg.statsMu.Unlock()
		reg.sweepMu.Unlock()
		solo := soloTraceback()
		before := pauses()
		gc0 = gcCycles()
		wall := churn(n, start, func(i int) { work(i); observe() })
		r := scaleResult{
			gc: gcCycles() - gc0, baseGC: baseGC,
			name: name, idle: idleN, goroutines: n, wall: wall, baseline: baseline,
			pauses: pausesSince(before), sweeps: registrySweeps() - sweeps,
			solo: solo, maxImplicit: maxImplicit.Load(),
		}
		reg.sweepMu.Lock()
		reg.statsMu.Lock()
		r.traceMax, r.traceAll = reg.tracebackMax, reg.tracebackTotal-traceAll
		longestSweep := reg.sweepMax
		reg.tracebackMax, reg.sweepMax = max(traceMax, reg.tracebackMax), max(sweepMax, reg.sweepMax)
		reg.statsMu.Unlock()
		reg.sweepMu.Unlock()
		// The bound of sweep.go: 2 × the peak of goroutines, plus
		// minSweep, plus the implicit contexts made within one pacing
		// interval (sweepPace × the longest pause) and during the
		// longest sweep, at the churn's mean rate doubled for its
		// swings, plus the churn's 64 at a time.
		interval := sweepPace*r.traceMax + longestSweep
		r.bound = 2*int64(idleN+64+16) + minSweep + 64 + 2*int64(float64(n)*float64(interval)/float64(wall))
		return r
	}

	runOne := func(i int) {
		_ = New().Run(func() error {
			v.Set(i)
			if got, _ := v.Get(); got != i {
				t.Errorf("Get in Run = %d; want %d", got, i)
			}
			return nil
		})
	}
	setOutside := func(i int) {
		v.Set(i)
		if got, _ := v.Get(); got != i {
			t.Errorf("Get = %d; want %d", got, i)
		}
	}
	inGo := func(f func()) { Go(f) }
	// (d) runs first: a traceback walks every goroutine the process ever
	// had at once, dead ones too, so it costs more after the 150,000 of
	// (a)-(c) than in a process that only ever had (d)'s 2,000.
	d := scenario("(d) Set outside Run, 2,000 idle", 2_000, 100_000, goStatement, setOutside)
	results := []scaleResult{
		scenario("(a) Run per goroutine", 100_000, 50_000, goStatement, runOne),
		scenario("(b) Go fan-out", 100_000, 50_000, inGo, setOutside), // inside Go's Run
		scenario("(c) Set outside Run", 100_000, 50_000, goStatement, setOutside),
		d,
	}
	sweepNow()

	var b strings.Builder
	fmt.Fprintf(&b, "\n| scenario | idle | goroutines | wall | without the package | ratio | GC cycles (without) | non-GC pauses | longest | paused in all | share of wall | sweeps | longest traceback | tracebacks in all | solo traceback | most implicit entries (bound) |\n")
	fmt.Fprintf(&b, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %d | %d | %v | %v | %.2fx | %d (%d) | %d | ≤ %v | %v | %.1f%% | %d | %v | %v | %v | %d (%d) |\n",
			r.name, r.idle, r.goroutines, r.wall.Round(time.Millisecond), r.baseline.Round(time.Millisecond),
			float64(r.wall)/float64(r.baseline), r.gc, r.baseGC, r.pauses.n, r.pauses.max, r.pauses.total.Round(10*time.Microsecond),
			100*float64(r.pauses.total)/float64(r.wall), r.sweeps, r.traceMax.Round(10*time.Microsecond),
			r.traceAll.Round(10*time.Microsecond), r.solo.Round(10*time.Microsecond), r.maxImplicit, r.bound)
	}
	t.Log(b.String())

	for _, r := range results[:3] {
		assert.Zero(t, r.sweeps, "%s: no sweep is due", r.name)
		assert.Zero(t, r.pauses.n, "%s: no stop-the-world pause", r.name)
	}
	assert.NotZero(t, d.sweeps, "(d): sweeps reclaim the implicit contexts")
	for _, r := range results {
		assert.LessOrEqual(t, r.maxImplicit, r.bound, "%s: implicit entries within 2 × peak goroutines + those made within one pacing interval", r.name)
	}
}
