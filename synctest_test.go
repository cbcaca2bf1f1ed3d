package contextvars

import (
	"os"
	"os/exec"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Defect 3 of the registry's review: the package must be invisible in
// testing/synctest bubbles. A sweep timer armed inside a bubble belongs to
// the bubble: it never fired after the bubble ended, so the old registry
// thought it armed for ever and stopped reclaiming; and its re-arming kept a
// deadlocked bubble from being reported.

// implicitInBubble makes n implicit contexts inside a bubble, on goroutines
// that exit: enough for the count rule, so the old registry armed its timer
// there.
func implicitInBubble(t *testing.T, n int) {
	v := NewVar[int]("in bubble")
	synctest.Test(t, func(t *testing.T) {
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { v.Set(i) })
		}
		wg.Wait()
		v.Set(-1)
		got, _ := v.Get()
		assert.Equal(t, -1, got)
	})
}

// TestSynctest_reclaimsAfterBubble: after a bubble whose goroutines made
// implicit contexts, 200 goroutines outside any bubble set 1 MiB each
// outside Run and exit: the timer must still reclaim the 200 MiB.
func TestSynctest_reclaimsAfterBubble(t *testing.T) {
	implicitInBubble(t, 4*minSweep)
	const goroutines, size = 200, 1 << 20
	v := NewVar[[]byte]("payload")
	before := heapInUse()
	setOutsideAndExit(v, goroutines, size)
	assertReclaimed(t, before, goroutines*size, "the values of exited goroutines are reclaimed after a bubble")
}

// TestSynctest_deadlockReported runs, in a child process, a bubble whose
// goroutines make implicit contexts and then deadlock: synctest must report
// the deadlock, which a timer of ours in the bubble would hide (the fake
// clock would jump to each of its firings instead).
func TestSynctest_deadlockReported(t *testing.T) {
	if os.Getenv("CONTEXTVARS_DEADLOCK_CHILD") == "1" {
		v := NewVar[int]("v")
		synctest.Test(t, func(t *testing.T) {
			var wg sync.WaitGroup
			for i := range 4 * minSweep {
				wg.Go(func() { v.Set(i) })
			}
			wg.Wait()
			v.Set(1)
			block := make(chan struct{})
			go func() { <-block }() // never closed: a deadlock
			<-block
		})
		return
	}
	assertDeadlockReported(t, "TestSynctest_deadlockReported", "CONTEXTVARS_DEADLOCK_CHILD")
}

// assertDeadlockReported runs test in a child process with env set to 1,
// where it deadlocks a bubble, and checks that synctest reported the
// deadlock rather than the test timing out.
func assertDeadlockReported(t *testing.T, test, env string) {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run=^"+test+"$", "-test.timeout=60s")
	cmd.Env = append(os.Environ(), env+"=1")
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "the deadlocked bubble failed its test")
	assert.Contains(t, string(out), "deadlock", "synctest reported the deadlock, not a timeout")
	assert.NotContains(t, string(out), "test timed out")
}

// TestSynctest_inBubble: inBubble tells a bubble's goroutines from others.
func TestSynctest_inBubble(t *testing.T) {
	assert.False(t, inBubble())
	synctest.Test(t, func(t *testing.T) {
		assert.True(t, inBubble())
		done := make(chan bool)
		go func() { done <- inBubble() }()
		assert.True(t, <-done, "a goroutine started in the bubble is in it")
	})
}

// TestSynctest_reclaimsImplicitMadeInBubble: 200 goroutines in a bubble each
// set 1 MiB outside Run, all alive at once (so no sweep pays), then exit
// with the bubble; nothing outside the bubble makes implicit contexts after.
// The 200 MiB must still be reclaimed (found by the review of issue #17: no
// timer was armed in the bubble, and nothing checked outside it).
func TestSynctest_reclaimsImplicitMadeInBubble(t *testing.T) {
	const goroutines, size = 200, 1 << 20
	v := NewVar[[]byte]("payload")
	sweepNow()
	before := heapInUse()
	synctest.Test(t, func(t *testing.T) { setOutsideAndExit(v, goroutines, size) })
	assertReclaimed(t, before, goroutines*size, "the values of a bubble's exited goroutines are reclaimed")
}

// TestSynctest_reclaimsFewImplicitMadeInBubble: as
// TestSynctest_reclaimsImplicitMadeInBubble with 20 goroutines, fewer than
// the count rule's minSweep: outside a bubble the cheap timer reclaims so
// few within about a second, and so it must after a bubble (found by the
// session-11 break review: nothing was scheduled, and they were held for
// good).
func TestSynctest_reclaimsFewImplicitMadeInBubble(t *testing.T) {
	const goroutines, size = 20, 1 << 20
	v := NewVar[[]byte]("payload")
	quiesceSweeps()
	before := heapInUse()
	synctest.Test(t, func(t *testing.T) { setOutsideAndExit(v, goroutines, size) })
	reg.sweepMu.Lock()
	n, scheduled := reg.implicit.Load(), reg.timerArmed || reg.wakeupPending
	reg.sweepMu.Unlock()
	if n > 0 && !scheduled {
		t.Fatalf("%d implicit entries of a bubble's exited goroutines, and no timer or wakeup scheduled to reclaim them", n)
	}
	assertReclaimed(t, before, goroutines*size, "the values of a bubble's few exited goroutines are reclaimed")
}

// quiesceSweeps waits for a wakeup an earlier bubble asked for, sweeps, and
// disarms the sweep timer, so that what a test does next is the only thing
// that can arm it.
func quiesceSweeps() {
	for {
		reg.sweepMu.Lock()
		pending := reg.wakeupPending
		reg.sweepMu.Unlock()
		if !pending {
			break
		}
		runtime.GC() // the wakeup is a cleanup: it runs after a collection
		time.Sleep(time.Millisecond)
	}
	sweepNow()
	reg.sweepMu.Lock()
	defer reg.sweepMu.Unlock()
	if reg.timerArmed && reg.timer.Stop() {
		reg.timerArmed = false
	}
}

// TestSynctest_deadlockReportedLiveHolders: as TestSynctest_deadlockReported,
// but the goroutines that made the implicit contexts are the deadlocked ones,
// alive, so no sweep can drop their entries and the old registry's timer
// kept re-arming in the bubble until -test.timeout.
func TestSynctest_deadlockReportedLiveHolders(t *testing.T) {
	if os.Getenv("CONTEXTVARS_DEADLOCK_CHILD2") == "1" {
		v := NewVar[int]("v")
		synctest.Test(t, func(t *testing.T) {
			block := make(chan struct{}) // never closed: a deadlock
			var set sync.WaitGroup
			set.Add(4 * minSweep)
			for i := range 4 * minSweep {
				go func() { v.Set(i); set.Done(); <-block }()
			}
			set.Wait()
			<-block
		})
		return
	}
	assertDeadlockReported(t, "TestSynctest_deadlockReportedLiveHolders", "CONTEXTVARS_DEADLOCK_CHILD2")
}
