package contextvars

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Implicit contexts made on the goroutines where the runtime runs
// finalizers and cleanups, which runtime.Stack lists only while they run
// one: sweeps must not take them for exited (sweeper.pinned).

// finalized is an object whose finalizer runs a func; big and with a
// pointer, so that it is not a tiny allocation.
type finalized struct {
	p *int
	_ [48]byte
}

// onFinalizer makes the finalizer goroutine run f, and returns a channel
// closed when f has returned.
func onFinalizer(f func()) <-chan struct{} {
	done := make(chan struct{})
	p := &finalized{}
	runtime.SetFinalizer(p, func(*finalized) { f(); close(done) })
	p = nil
	go func() { // collect until it has run
		for {
			runtime.GC()
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return done
}

// TestSweep_finalizerImplicitContextSurvives: a var set outside any Run in
// a finalizer is still set in the next finalizer, however many sweeps ran
// in between while the finalizer goroutine was idle (and unlisted).
func TestSweep_finalizerImplicitContextSurvives(t *testing.T) {
	v := NewVar[int]("fin.implicit")
	var id atomic.Uint64
	<-onFinalizer(func() { v.Set(1); id.Store(goroutineID()) })
	defer func() { <-onFinalizer(func() { dropImplicit() }) }()
	for range 20 {
		sweepNow()
	}
	assert.Equal(t, 1, statesOf(id.Load()), "the finalizer goroutine's state after sweeps")
	var got int
	var sameGoroutine bool
	<-onFinalizer(func() { got, _ = v.Get(); sameGoroutine = goroutineID() == id.Load() })
	if !sameGoroutine {
		t.Skip("the runtime ran the two finalizers on different goroutines")
	}
	assert.Equal(t, 1, got, "the value set in the first finalizer")
}

// TestSweep_finalizerRunDuringSweep is a real sweep whose listing lacks the
// idle finalizer goroutine, which holds an implicit context; before the
// sweep drops anything, the next finalizer enters a Run on that goroutine,
// reusing the state. The sweep dropped it: inside the Run, Get saw nothing
// and Set made a second, implicit state that outlived the Run.
func TestSweep_finalizerRunDuringSweep(t *testing.T) {
	v := NewVar[int]("fin.implicit")
	w := NewVar[int]("fin.run")
	var fid atomic.Uint64
	<-onFinalizer(func() { v.Set(1); fid.Store(goroutineID()) })
	id := fid.Load()
	defer func() { <-onFinalizer(func() { dropImplicit() }) }()
	require.Equal(t, 1, statesOf(id))

	entered, dropped := make(chan struct{}), make(chan struct{})
	var inRunW, afterW, afterV bool
	var statesInRun int
	var done <-chan struct{}
	hit := false
	setSweepListed(func(cands map[uint64]*gstate) {
		if _, ok := cands[id]; !ok || hit {
			return // listed, or done already
		}
		hit = true
		done = onFinalizer(func() {
			_ = New().Run(func() error {
				w.Set(2)
				close(entered)
				<-dropped
				_, inRunW = w.Get()
				w.Set(3)
				statesInRun = statesOf(goroutineID())
				return nil
			})
			_, afterW = w.Get()
			_, afterV = v.Get()
		})
		<-entered
	})
	defer setSweepListed(nil)
	for deadline := time.Now().Add(5 * time.Second); !hit && time.Now().Before(deadline); {
		sweepNow()
	}
	require.True(t, hit, "no sweep's listing lacked the idle finalizer goroutine")
	close(dropped)
	<-done
	assert.True(t, inRunW, "Get inside the Run sees the value set in it")
	assert.Equal(t, 1, statesInRun, "one state for the goroutine inside its Run")
	assert.False(t, afterW, "a value set inside the Run is not seen after it")
	assert.True(t, afterV, "the finalizer goroutine's implicit context survives sweeps")
}

// setSweepListed sets the sweeps' test hook, with sweepMu held: sweeps
// started by timers read it too.
func setSweepListed(f func(cands map[uint64]*gstate)) {
	reg.sweepMu.Lock()
	defer reg.sweepMu.Unlock()
	sweepListed = f
}
