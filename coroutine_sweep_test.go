package contextvars

import (
	"iter"
	"runtime"
	"testing"
)

// TestSeams_sweepKeepsImplicitOfSuspendedCoroutine: iter.Pull (not Pull)
// runs a sequence on a coroutine goroutine; a Set there outside Run makes
// an implicit context. A sweep while the coroutine is suspended must not
// take it for an exited goroutine.
func TestSeams_sweepKeepsImplicitOfSuspendedCoroutine(t *testing.T) {
	v := NewVar[int]("v")
	next, stop := iter.Pull(func(yield func(int) bool) {
		v.Set(42)
		for {
			got, _ := v.Get()
			if !yield(got) {
				return
			}
		}
	})
	defer stop()
	got, _ := next()
	if got != 42 {
		t.Fatalf("first: %d", got)
	}
	runtime.GC()
	sweepNow()
	got, _ = next()
	if got != 42 {
		t.Fatalf("after a sweep, the coroutine's implicit context is gone: Get = %d", got)
	}
}

// TestSeams_sweepKeepsImplicitOfLockedAndSyscallGoroutines: goroutines
// blocked in various states keep their implicit contexts across sweeps.
func TestSeams_sweepKeepsImplicitOfLockedGoroutine(t *testing.T) {
	v := NewVar[int]("v")
	ready, release, done := make(chan struct{}), make(chan struct{}), make(chan int)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		v.Set(7)
		ready <- struct{}{}
		<-release
		got, _ := v.Get()
		done <- got
	}()
	<-ready
	sweepNow()
	close(release)
	if got := <-done; got != 7 {
		t.Fatalf("locked goroutine lost its implicit context: %d", got)
	}
}
