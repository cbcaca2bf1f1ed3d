package contextvars

import (
	"runtime"
	"sync"
	"testing"
	"time"
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
