package contextvars

// Registry paths of entering and leaving a Run (lookupOrClaim), with states
// behind their chain's head, implicit contexts and sweeps running meanwhile;
// written by adversarial reviews of 338562f and of the registry.

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
)

// regSnap is what a goroutine's view of the registry must be unchanged by.
type regSnap struct {
	gs                 *gstate
	owner              uint64
	current, implicit  *Context
	statesOfSelf       int
	implicitCount      int64
	statsImplicit, all int
}

func snap() regSnap {
	s := regSnap{gs: state(), statesOfSelf: statesOf(goroutineID()), implicitCount: reg.implicit.Load()}
	if s.gs != nil {
		s.owner = atomic.LoadUint64(&s.gs.owner)
		s.current, s.implicit = s.gs.current, s.gs.implicit
	}
	st := ReadStats()
	s.statsImplicit, s.all = st.Implicit, st.Goroutines
	return s
}

// TestRegistry_runExitPathsLeaveRegistryAsFound: in a bucket where this
// goroutine's state (if any) is behind the head, and its slot held by
// another goroutine (behind), or not, every way in and out of Run leaves the
// registry as it found it, with and without an implicit context.
func TestRegistry_runExitPathsLeaveRegistryAsFound(t *testing.T) {
	v := NewVar[int]("v")
	for _, implicit := range []bool{false, true} {
		for _, behind := range []bool{false, true} {
			t.Run(fmt.Sprintf("implicit=%v/behind=%v", implicit, behind), func(t *testing.T) {
				sweepNow()
				var wg sync.WaitGroup
				setUp, slotIn, headIn, done := make(chan struct{}), make(chan struct{}), make(chan struct{}), make(chan struct{})
				sameSlot(3, &wg, func(i int) {
					switch i {
					case 2: // holds the bucket's slot, if behind
						if behind {
							_ = New().Run(func() error { close(slotIn); <-done; return nil })
						} else {
							close(slotIn)
						}
						return
					case 1: // holds the head of the chain, if behind
						<-setUp
						<-slotIn
						if behind {
							v.Set(1) // implicit: pushed on the chain
							close(headIn)
							<-done
							DropImplicit()
						} else {
							close(headIn)
						}
						return
					}
					if implicit {
						v.Set(7)
					}
					close(setUp)
					<-headIn
					defer close(done)
					if behind && implicit && reg.atHome(goroutineID()) != nil {
						t.Errorf("state should be behind the head")
					}
					before := snap()
					check := func(what string) {
						t.Helper()
						after := snap()
						// Goroutines count may drop/grow by other goroutine's own activity: compare ours only.
						after.all, before.all = 0, 0
						if after != before {
							t.Errorf("%s: registry changed: before %+v after %+v", what, before, after)
						}
					}
					ctx := New()
					// return
					_ = ctx.Run(func() error {
						if statesOf(goroutineID()) != 1 {
							t.Errorf("states in Run: %d", statesOf(goroutineID()))
						}
						if implicit && state() != before.gs {
							t.Errorf("Run claimed a second state")
						}
						v.Set(1)
						return nil
					})
					check("return")
					// error
					_ = ctx.Run(func() error { return errors.New("x") })
					check("error")
					// panic
					func() {
						defer func() { _ = recover() }()
						_ = ctx.Run(func() error { panic("p") })
					}()
					check("panic")
					// nested + panic through both
					func() {
						defer func() { _ = recover() }()
						_ = ctx.Run(func() error { return New().Run(func() error { panic("p") }) })
					}()
					check("nested panic")
					// ErrAlreadyEntered (same goroutine)
					_ = ctx.Run(func() error {
						if err := ctx.Run(func() error { return nil }); !errors.Is(err, ErrAlreadyEntered) {
							t.Errorf("want ErrAlreadyEntered, got %v", err)
						}
						return nil
					})
					check("already entered (nested)")
					// ErrAlreadyEntered (entered by another goroutine)
					held, rel := make(chan struct{}), make(chan struct{})
					var w2 sync.WaitGroup
					w2.Go(func() { _ = ctx.Run(func() error { close(held); <-rel; return nil }) })
					<-held
					if err := ctx.Run(func() error { return nil }); !errors.Is(err, ErrAlreadyEntered) {
						t.Errorf("want ErrAlreadyEntered, got %v", err)
					}
					close(rel)
					w2.Wait()
					check("already entered (other)")
					// nil fn, nil ctx
					if err := ctx.Run(nil); err == nil {
						t.Errorf("nil fn")
					}
					var nc *Context
					if err := nc.Run(func() error { return nil }); err == nil {
						t.Errorf("nil ctx")
					}
					if _, err := Call[int](ctx, nil); err == nil {
						t.Errorf("nil fn call")
					}
					check("nil")
					// Goexit, on a fresh goroutine of the same bucket is hard; do it via
					// the sibling later. Here: Call
					_, _ = Call(ctx, func() (int, error) { return 1, nil })
					check("call")
					if implicit {
						if got, _ := v.Get(); got != 7 {
							t.Errorf("implicit value lost: %d", got)
						}
						DropImplicit()
					}
				})
				wg.Wait()
			})
		}
	}
}

// TestRegistry_goexitBehindHead: a goroutine behind the head does Goexit in
// an outermost Run, with and without an implicit context; its state must be
// freed (no implicit) or kept as it was (implicit, then swept after exit).
func TestRegistry_goexitBehindHead(t *testing.T) {
	defer holdSlot(t, bucketIndex(goroutineID()))() // so that both go on the chain
	v := NewVar[int]("v")
	for _, implicit := range []bool{false, true} {
		sweepNow()
		base := ReadStats()
		var wg sync.WaitGroup
		setUp, headIn, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
		var id uint64
		sameSlot(2, &wg, func(i int) {
			if i == 1 {
				<-setUp
				_ = New().Run(func() error { close(headIn); <-done; return nil })
				return
			}
			id = goroutineID()
			if implicit {
				v.Set(7)
			}
			close(setUp)
			<-headIn
			defer close(done)
			if implicit && reg.atHome(goroutineID()) != nil {
				t.Errorf("state should be behind the head")
			}
			defer func() {
				// deferred after Goexit: state as before the Run
				if implicit {
					if got, _ := v.Get(); got != 7 {
						t.Errorf("implicit lost after Goexit: %d", got)
					}
				} else if state() != nil {
					t.Errorf("state kept after Goexit")
				}
			}()
			_ = New().Run(func() error { v.Set(1); runtime.Goexit(); return nil })
		})
		wg.Wait()
		sweepNow()
		after := ReadStats()
		if after.Goroutines != base.Goroutines || after.Implicit != base.Implicit {
			t.Errorf("implicit=%v: stats before %+v after %+v", implicit, base, after)
		}
		if n := statesOf(id); n != 0 {
			t.Errorf("implicit=%v: %d states left for exited goroutine", implicit, n)
		}
	}
}

// TestRegistry_sameBucketStormWithSweeps: many goroutines in one bucket, each in a loop
// of: implicit Set or not, outermost Run, nested Run, a second Run while the
// first is held by a sibling, panics and Goexits, drops; some exit holding an
// implicit context; sweeps run throughout. Each goroutine checks, inside every
// Run, that it has exactly one state, that the state is the one it had before
// when it had one, that its current context is the one it entered, and that it
// sees its own values; no two goroutines ever hold the same state.
func TestRegistry_sameBucketStormWithSweeps(t *testing.T) {
	const n = 12
	iters := 400
	v := NewVar[int]("v")
	var holders sync.Map // *gstate -> goroutine index
	hold := func(g int, gs *gstate) {
		if o, loaded := holders.LoadOrStore(gs, g); loaded && o.(int) != g {
			t.Errorf("goroutine %d and %d share a state %p", g, o.(int), gs)
		}
	}
	unhold := func(gs *gstate) { holders.Delete(gs) }

	stopSweeps := sweepInBackground()
	sweepNow()
	base := ReadStats()
	shared := New()
	start := make(chan struct{})
	var wg sync.WaitGroup
	var goexits atomic.Int64
	var generation func(gen int)
	generation = func(gen int) {
		var gw sync.WaitGroup
		sameSlot(n, &gw, func(g int) {
			<-start
			id := goroutineID()
			hasImplicit := false
			var implGS *gstate
			defer func() {
				if implGS != nil {
					unhold(implGS)
				}
			}()
			for i := range iters {
				want := gen*1_000_000 + g*iters + i
				if i%5 == 1 && !hasImplicit {
					v.Set(-want)
					hasImplicit = true
					implGS = state()
					hold(g, implGS)
				}
				before := state()
				ctx := New()
				body := func() error {
					gs := state()
					if before != nil && gs != before {
						t.Errorf("g%d: Run claimed a second state", g)
					}
					if k := statesOf(id); k != 1 {
						t.Errorf("g%d: %d states inside Run", g, k)
					}
					if before == nil {
						hold(g, gs)
					}
					v.Set(want)
					runtime.Gosched()
					if gs.current != ctx {
						t.Errorf("g%d: current is not the entered context", g)
					}
					if got, _ := v.Get(); got != want {
						t.Errorf("g%d: sees %d want %d", g, got, want)
					}
					// nested
					_ = New().Run(func() error {
						if state() != gs || statesOf(id) != 1 {
							t.Errorf("g%d: nested Run has another state", g)
						}
						if _, ok := v.Get(); ok {
							t.Errorf("g%d: sees value in fresh ctx", g)
						}
						return nil
					})
					// contend for a shared context
					_ = shared.Run(func() error { runtime.Gosched(); return nil })
					if before == nil {
						unhold(gs)
					}
					switch i % 7 {
					case 3:
						panic(errPanic)
					}
					return nil
				}
				func() {
					defer func() {
						if r := recover(); r != nil && r != errPanic {
							panic(r)
						}
					}()
					_ = ctx.Run(body)
				}()
				after := state()
				if hasImplicit {
					if after != implGS {
						t.Errorf("g%d: implicit state changed", g)
					}
					if got, _ := v.Get(); got >= 0 {
						t.Errorf("g%d: implicit value %d", g, got)
					}
					if i%4 == 0 {
						unhold(implGS)
						if !dropImplicit() {
							t.Errorf("g%d: dropImplicit failed", g)
						}
						hasImplicit, implGS = false, nil
					}
				} else if after != nil {
					t.Errorf("g%d: state left after outermost Run", g)
				}
			}
			// End: some exit with implicit, some Goexit inside a Run.
			switch g % 3 {
			case 0:
				if !hasImplicit {
					v.Set(1)
					implGS = state()
					hold(g, implGS)
				}
			case 1:
				goexits.Add(1)
				_ = New().Run(func() error { runtime.Goexit(); return nil })
			}
		})
		gw.Wait()
	}
	for gen := range 3 {
		wg.Go(func() { generation(gen) })
	}
	close(start)
	wg.Wait()
	stopSweeps()
	sweepNow()
	after := ReadStats()
	if after.Goroutines != base.Goroutines || after.Implicit != base.Implicit || reg.implicit.Load() != int64(after.Implicit) {
		t.Errorf("stats before %+v after %+v (reg.implicit %d)", base, after, reg.implicit.Load())
	}
}

var errPanic = errors.New("panic in a storm")

// TestRegistry_sameBucketStormInSynctest: the storm, smaller, in a bubble.
func TestRegistry_sameBucketStormInSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v := NewVar[int]("v")
		var wg sync.WaitGroup
		start := make(chan struct{})
		sameSlot(6, &wg, func(g int) {
			<-start
			id := goroutineID()
			for i := range 200 {
				if i%3 == 0 {
					v.Set(-1)
				}
				before := state()
				_ = New().Run(func() error {
					if before != nil && state() != before {
						t.Errorf("second state")
					}
					if statesOf(id) != 1 {
						t.Errorf("states %d", statesOf(id))
					}
					v.Set(i)
					time.Sleep(time.Millisecond)
					if got, _ := v.Get(); got != i {
						t.Errorf("got %d", got)
					}
					return nil
				})
				if i%3 == 2 {
					dropImplicit()
				}
			}
			if g%2 == 0 {
				v.Set(5) // exit holding an implicit context
			}
		})
		close(start)
		wg.Wait()
	})
	sweepNow()
}

// TestRegistry_copyLookupResetWhileHeadsDrop: B, inside a Run (and, in the
// other mode, outside any Run holding an implicit context), loops over
// CopyContext, Lookup, Set/Reset, Get, nested Run and a switch hook that
// reads vars, while same-bucket goroutines push implicit states in front of
// B's and exit, and sweeps drop them.
func TestRegistry_copyLookupResetWhileHeadsDrop(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("needs two Ps: one goroutine spins on its lookups while the sweeps run on another; on one P each preemption slice costs 10 ms")
	}
	for _, implicit := range []bool{false, true} {
		name := "inRun"
		if implicit {
			name = "implicit"
		}
		t.Run(name, func(t *testing.T) {
			trials := 50
			if long() {
				trials = 500
			}
			if raceEnabled {
				trials = 40 // each trial starts about 4,096 goroutines to find one of the bucket
			}
			v := NewVar[int]("v")
			other := NewVar[int]("other")
			var bad atomic.Int64
			var stop atomic.Bool
			var hookBad atomic.Int64
			remove := OnSwitch(func(from, to *Context) {
				if to != nil && to == CopyContext() { // never equal: a copy
					hookBad.Add(1)
				}
				if to != nil {
					if _, ok := v.In(to); !ok && false {
						hookBad.Add(1)
					}
				}
			})
			defer remove()
			ready := make(chan uint64)
			finished := make(chan [3]int)
			body := func() {
				id := goroutineID()
				v.Set(1)
				other.Set(7)
				ready <- id
				for !stop.Load() {
					c := CopyContext()
					if x, ok := v.In(c); !ok || x != 1 {
						bad.Add(1)
					}
					if x, ok := Lookup(v); !ok || x.(int) != 1 {
						bad.Add(1)
					}
					tok := other.Set(8)
					if err := tok.Reset(); err != nil {
						bad.Add(1)
					}
					if x, _ := other.Get(); x != 7 {
						bad.Add(1)
					}
					_ = New().Run(func() error {
						if _, ok := v.Get(); ok {
							bad.Add(1)
						}
						return nil
					})
					if statesOf(id) != 1 {
						bad.Add(1)
					}
				}
			}
			go func() {
				id := uint64(0)
				if implicit {
					body()
					id = goroutineID()
					dropped := dropImplicit()
					_, ok := v.Get()
					finished <- [3]int{b2i(!dropped), b2i(ok), statesOf(id)}
					return
				}
				_ = New().Run(func() error { body(); id = goroutineID(); return nil })
				_, ok := v.Get()
				finished <- [3]int{0, b2i(ok), statesOf(id)}
			}()
			home := bucketIndex(<-ready)
			var sw sync.WaitGroup
			sw.Go(func() {
				for !stop.Load() {
					sweepNow()
					runtime.Gosched()
				}
			})
			for i := range trials {
				a := pushExited(home, v, i%3 == 2)
				for i%3 != 2 && statesOf(a) != 0 {
					runtime.Gosched()
				}
			}
			stop.Store(true)
			sw.Wait()
			r := <-finished
			assert.Zero(t, bad.Load(), "wrong reads inside")
			assert.Zero(t, hookBad.Load())
			assert.Equal(t, [3]int{0, 0, 0}, r, "drop failed / value leaked / states left")
		})
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
