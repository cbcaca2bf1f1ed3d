package contextvars

// Tests of the registry's slots from the break review of the bucket layout:
// the home bucket's top covering its sub-buckets' pushes (pushFor), a
// slot's short free, and the hooked flag.

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// checkHomeTops counts chain states, sub-buckets' included, whose id is above
// their home bucket's top (the new invariant lookupOrClaim relies on).
func checkHomeTops(t *testing.T) (bad int) {
	t.Helper()
	for i := range reg.buckets {
		hb := &reg.buckets[i]
		top := hb.top.Load()
		check := func(b *bucket) {
			for gs := b.head.Load(); gs != nil; gs = gs.next.Load() {
				o := atomic.LoadUint64(&gs.owner)
				if o == 0 || o&ownerUnlinked != 0 {
					continue
				}
				if id := o & ownerIDMask; id > top {
					bad++
					t.Errorf("bucket %d: state of %d above home top %d", i, id, top)
				}
			}
		}
		check(&hb.bucket)
		if sub := hb.sub.Load(); sub != nil {
			for j := range sub {
				check(&sub[j])
			}
		}
	}
	return bad
}

// slotClean reports what of a free slot is left for its next owner.
var slotChecks atomic.Int64

func slotClean(t *testing.T, home uint64, msg string) {
	t.Helper()
	s := &reg.buckets[home].slot
	if atomic.LoadUint64(&s.owner) != 0 {
		return // someone else took it meanwhile
	}
	slotChecks.Add(1)
	assert.Nil(t, s.current, msg+": current")
	assert.Nil(t, s.implicit, msg+": implicit")
	assert.False(t, s.dropPending, msg+": dropPending")
	assert.Nil(t, s.hookCtx, msg+": hookCtx")
	assert.False(t, s.hooked, msg+": hooked")
	assert.Nil(t, s.home, msg+": home")
	assert.Nil(t, s.next.Load(), msg+": next")
	assert.False(t, s.cached, msg+": cached")
	assert.Equal(t, [lookupCacheSize]cacheEntry{}, s.cache, msg+": cache")
}

// TestRegistry_implicitInSubBucketThenRun: goroutines of a crowded bucket hold
// implicit states (some in sub-buckets); the crowd leaves, the slot is
// free; each then enters Runs (nested too) and must find its own implicit
// state, not claim the slot, and see its value; DropImplicit inside the Run
// drops it at the end.
func TestRegistry_implicitInSubBucketThenRun(t *testing.T) {
	const n = 4 * crowded
	v := NewVar[int]("v")
	sweepNow()
	home := bucketIndex(goroutineID())
	hb := &reg.buckets[home]
	holders := make(chan struct{})
	var holdWG sync.WaitGroup
	// crowd: Run holders, which go away first
	holdInside := make(chan uint64, n)
	sameSlot(n, &holdWG, func(i int) {
		_ = New().Run(func() error { holdInside <- goroutineID(); <-holders; return nil })
	})
	for range n {
		<-holdInside
	}
	require.NotNil(t, hb.sub.Load())
	// implicit goroutines, pushed while crowded: in sub-buckets
	const m = 2 * crowded
	stage1, stage2 := make(chan struct{}), make(chan struct{})
	ids := make(chan uint64, m)
	var wg sync.WaitGroup
	sameSlot(m, &wg, func(i int) {
		v.Set(100 + i)
		ids <- goroutineID()
		<-stage1
		<-stage2
		id := goroutineID()
		for round := range 3 {
			_ = New().Run(func() error {
				if got := statesOf(id); got != 1 {
					t.Errorf("g %d round %d: %d states", i, round, got)
				}
				if atomic.LoadUint64(&hb.slot.owner) == id {
					t.Errorf("g %d with implicit took the slot", i)
				}
				_ = New().Run(func() error {
					v.Set(-1)
					return nil
				})
				if _, ok := v.Get(); ok {
					t.Errorf("g %d: value in new ctx", i)
				}
				return nil
			})
			if got, _ := v.Get(); got != 100+i {
				t.Errorf("g %d sees %d after Run", i, got)
			}
		}
		_ = New().Run(func() error { DropImplicit(); return nil })
		if statesOf(id) != 0 {
			t.Errorf("g %d: state kept after DropImplicit inside Run", i)
		}
	})
	inSub := 0
	for range m {
		id := <-ids
		for _, b := range chainsOf(id)[1:] {
			for gs := b.head.Load(); gs != nil; gs = gs.next.Load() {
				if atomic.LoadUint64(&gs.owner)&ownerIDMask == id {
					inSub++
				}
			}
		}
	}
	t.Logf("%d implicit states in sub-buckets", inSub)
	assert.Zero(t, checkHomeTops(t))
	close(holders)
	holdWG.Wait()
	close(stage1)
	close(stage2)
	wg.Wait()
	assert.Zero(t, checkHomeTops(t))
	slotClean(t, home, "after the crowd")
}

// TestRegistry_slotAfterHookChaos: a goroutine runs, on its bucket's free
// slot, nested Runs whose switch hooks panic, Goexit, are removed
// meanwhile, and call DropImplicit; after each, the slot is left clean.
func TestRegistry_slotAfterHookChaos(t *testing.T) {
	v := NewVar[int]("v")
	var mode atomic.Int32
	var removeMu sync.Mutex
	var removeB func()
	removeA := OnSwitch(func(from, to *Context) {
		// Reads of both sides: valueLeaf with hookCtx
		_, _ = v.In(from)
		_, _ = v.In(to)
		switch mode.Load() {
		case 1:
			if to != nil && from != nil {
				panic("enter")
			}
		case 2:
			if from != nil && to != nil {
				runtime.Goexit()
			}
		case 3:
			DropImplicit()
		case 4:
			removeMu.Lock()
			if removeB != nil {
				removeB()
				removeB = nil
			}
			removeMu.Unlock()
		}
	})
	defer removeA()
	for round := range 200 {
		removeMu.Lock()
		removeB = OnSwitch(func(from, to *Context) {
			if mode.Load() == 5 && from != nil && to != nil {
				panic("B")
			}
		})
		removeMu.Unlock()
		mode.Store(int32(round % 6))
		for {
			var home uint64
			took := make(chan bool, 1)
			done := make(chan struct{})
			go func() {
				defer close(done)
				home = bucketIndex(goroutineID())
				if atomic.LoadUint64(&reg.buckets[home].slot.owner) != 0 {
					took <- false
					return
				}
				defer func() { _ = recover() }()
				_ = New().Run(func() error {
					took <- atomic.LoadUint64(&reg.buckets[home].slot.owner) == goroutineID()
					v.Set(round)
					_ = v.Get
					_ = New().Run(func() error {
						v.Set(2)
						_, _ = v.Get()
						DropImplicit()
						return New().Run(func() error { v.Set(3); return nil })
					})
					return nil
				})
			}()
			ok := <-took
			<-done
			if ok {
				slotClean(t, home, "round")
				break
			}
		}
		removeMu.Lock()
		if removeB != nil {
			removeB()
			removeB = nil
		}
		removeMu.Unlock()
	}
	t.Logf("%d slot checks", slotChecks.Load())
}

// TestRegistry_homeTopUnderChurn: registry-level churn in a crowded bucket
// with ids claimed out of order (per-P batches), while sweeps run: every
// state stays under its home top and is found.
func TestRegistry_homeTopUnderChurn(t *testing.T) {
	home := bucketIndex(goroutineID() + 1<<40)
	ids := idsOf(64, func(id uint64) bool { return bucketIndex(id) == home })
	hb := &reg.buckets[home]
	stop := sweepInBackground()
	var wg sync.WaitGroup
	// descending ids first: top jumps to the highest, lower ones claim later
	for g := range 8 {
		wg.Go(func() {
			my := ids[g*8 : g*8+8]
			for it := range 2000 {
				var held []*gstate
				for k := len(my) - 1; k >= 0; k-- {
					id := my[(k+it)%len(my)]
					gs := reg.lookupOrClaim(id)
					if reg.lookupOrClaim(id) != gs || reg.lookupSlow(id) != gs {
						t.Errorf("id %d not found again", id)
						return
					}
					if gs.home != nil && id > hb.top.Load() {
						t.Errorf("id %d above home top", id)
						return
					}
					held = append(held, gs)
				}
				for k, gs := range held {
					id := my[(len(my)-1-k+it)%len(my)]
					if statesOf(id) != 1 {
						t.Errorf("id %d has %d states", id, statesOf(id))
						return
					}
					reg.free(gs, id)
				}
				if it%97 == 0 {
					runtime.Gosched()
				}
			}
		})
	}
	wg.Wait()
	stop()
	assert.Zero(t, checkHomeTops(t))
	for _, id := range ids {
		assert.Zero(t, statesOf(id))
	}
}
