package contextvars

// Review of c6f9b33: what a crowded bucket costs after the peak that
// crowded it has passed. These tests use only what the parent commit has
// too (sameSlot, lookupOrClaim, free, bucketIndex), so they run on both.

import (
	"sync"
	"sync/atomic"
	"testing"
)

// peakOfIDs claims states for n synthetic ids (above every live goroutine's,
// each used by this goroutine only) of each bucket keep accepts, then frees
// them all: a peak of goroutines that has passed.
func peakOfIDs(n int, keep func(b uint64) bool) {
	per := map[uint64]int{}
	type held struct {
		gs *gstate
		id uint64
	}
	var all []held
	target, full := 0, 0
	for b := range uint64(numBuckets) {
		if keep(b) {
			target++
		}
	}
	for id := goroutineID() + 1<<41; full < target; id++ {
		b := bucketIndex(id)
		if !keep(b) || per[b] >= n {
			continue
		}
		if per[b]++; per[b] == n {
			full++
		}
		all = append(all, held{reg.lookupOrClaim(id), id})
	}
	for _, h := range all {
		reg.free(h.gs, h.id)
	}
	sweepNow()
}

// TestRegistry_runAfterPeakOfRealGoroutines: 12 goroutines of the test
// goroutine's home bucket sit inside Runs at once, then leave. The peak is
// over; the test goroutine, alone in its bucket again, enters Runs. On the
// parent its Run takes the bucket's slot (no allocation, and its Gets
// are answered by atHome); on c6f9b33 every outermost Run allocates a state
// in a sub-bucket and takes its mutex twice, and no Get ever hits atHome,
// for good.
func TestRegistry_runAfterPeakOfRealGoroutines(t *testing.T) {
	const n = 12
	inside, release := make(chan struct{}, n), make(chan struct{})
	var wg sync.WaitGroup
	sameSlot(n, &wg, func(int) {
		_ = New().Run(func() error {
			inside <- struct{}{}
			<-release
			return nil
		})
	})
	for range n {
		<-inside
	}
	close(release)
	wg.Wait()
	sweepNow()

	c := New()
	allocs := testing.AllocsPerRun(200, func() { _ = c.Run(func() error { return nil }) })
	if allocs != 0 {
		t.Errorf("after the peak, an outermost Run allocates %v times (parent: 0)", allocs)
	}
	id := goroutineID()
	var atHomeHit bool
	_ = c.Run(func() error { atHomeHit = reg.atHome(id) != nil; return nil })
	if !atHomeHit {
		t.Errorf("after the peak, a goroutine alone in its bucket is never found by atHome: every Get takes lookupSlow")
	}
}

// TestRegistry_runAfterPeakOfIDs is the same with synthetic ids in the test
// goroutine's bucket only.
func TestRegistry_runAfterPeakOfIDs(t *testing.T) {
	home := bucketIndex(goroutineID())
	peakOfIDs(12, func(b uint64) bool { return b == home })
	c := New()
	allocs := testing.AllocsPerRun(200, func() { _ = c.Run(func() error { return nil }) })
	if allocs != 0 {
		t.Errorf("after the peak, an outermost Run allocates %v times (parent: 0)", allocs)
	}
}

// BenchmarkRegistryAfterPeak: every bucket had 12 states at once (a peak of
// some 50,000 goroutines), now none is in use. Then the small-scale fast
// paths.
func BenchmarkRegistryAfterPeak(b *testing.B) {
	peakOfIDs(12, func(uint64) bool { return true })
	v := NewVar[int]("v")
	b.Run("ContextRun", func(b *testing.B) {
		b.ReportAllocs()
		c := New()
		empty := func() error { return nil }
		for b.Loop() {
			_ = c.Run(empty)
		}
	})
	b.Run("VarGet", func(b *testing.B) {
		b.ReportAllocs()
		c := New()
		_ = c.Run(func() error {
			v.Set(1)
			s := 0
			for b.Loop() {
				x, _ := v.Get()
				s += x
			}
			sinkInt = s
			return nil
		})
	})
	b.Run("GoroutineRunBounded", func(b *testing.B) {
		b.ReportAllocs()
		var wg sync.WaitGroup
		var bad atomic.Bool
		n := 0
		for b.Loop() {
			n++
			i := n
			wg.Go(func() {
				_ = New().Run(func() error {
					v.Set(i)
					if x, _ := v.Get(); x != i {
						bad.Store(true)
					}
					return nil
				})
			})
			if n%64 == 0 {
				wg.Wait()
			}
		}
		wg.Wait()
		if bad.Load() {
			b.Fatal("wrong value")
		}
	})
}
