package contextvars

import (
	"os"
	"os/exec"
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
	var set, wg sync.WaitGroup
	release := make(chan struct{})
	set.Add(goroutines)
	for range goroutines {
		wg.Go(func() {
			v.Set(make([]byte, size))
			set.Done()
			<-release
		})
	}
	set.Wait()
	close(release)
	wg.Wait()
	assert.Eventually(t, func() bool {
		return int64(heapInUse())-int64(before) < goroutines*size/10
	}, 10*time.Second, 20*time.Millisecond, "the values of exited goroutines are reclaimed after a bubble")
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
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run=^TestSynctest_deadlockReported$", "-test.timeout=60s")
	cmd.Env = append(os.Environ(), "CONTEXTVARS_DEADLOCK_CHILD=1")
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
