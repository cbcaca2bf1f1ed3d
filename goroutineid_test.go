package contextvars

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/petermattis/goid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGoroutineID_matchesStack checks goid.Get against the id runtime.Stack
// prints, on many goroutines: it breaks if a Go release moves g.goid.
func TestGoroutineID_matchesStack(t *testing.T) {
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			var buf [64]byte
			want := goid.ExtractGID(buf[:runtime.Stack(buf[:], false)])
			assert.Equal(t, uint64(want), goroutineID())
		})
	}
	wg.Wait()
}

// TestGoroutineID_distinct checks that live goroutines have distinct ids and
// that a sweep's listing finds them all.
func TestGoroutineID_distinct(t *testing.T) {
	const n = 200
	ids := make(chan uint64, n)
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			ids <- goroutineID()
			<-release
		})
	}
	seen := map[uint64]*gstate{}
	for range n {
		id := <-ids
		assert.NotContains(t, seen, id, "id given twice")
		seen[id] = nil
	}
	seen[goroutineID()] = nil
	reg.sweepMu.Lock()
	fit := reg.listLive(seen)
	reg.sweepMu.Unlock()
	require.True(t, fit)
	assert.Empty(t, seen, "the listing lacks live goroutines")
	close(release)
	wg.Wait()
}

// TestStartOf: an ordinary goroutine is walked once and then found in the
// ordinary table; the finalizer goroutine is told apart every time, and
// never entered in the table.
func TestStartOf(t *testing.T) {
	id := goroutineID()
	assert.Equal(t, startGo, startOf(id))
	assert.Equal(t, id, ordinary[id%uint64(len(ordinary))].Load(), "an ordinary goroutine is remembered")
	assert.Equal(t, startGo, startOf(id))

	var fin [2]goroutineStart
	var fid atomic.Uint64
	for i := range fin {
		<-onFinalizer(func() { fid.Store(goroutineID()); fin[i] = startOf(goroutineID()) })
	}
	assert.Equal(t, [2]goroutineStart{startHidden, startHidden}, fin, "the finalizer goroutine, twice")
	f := fid.Load()
	assert.NotEqual(t, f, ordinary[f%uint64(len(ordinary))].Load(), "the finalizer goroutine is not remembered as ordinary")
}
