//go:build cgo

package cgotest

import (
	"errors"
	"testing"

	"github.com/petermattis/goid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-contextvars/contextvars"
)

// result is what one callback saw.
type result struct {
	goid       int64
	sawBefore  bool  // a value of v before setting any
	setErr     error // what a Set outside Run panicked with
	inRun      int   // v inside a Run that set it
	sawAfter   bool  // a value of v after that Run
	statesLeft int
}

// TestCgo_callbacksOfThreadsDoNotMix is defect 4 of the registry's review:
// C threads that call into Go one after another run on one goroutine,
// which the runtime reuses. Each callback must start as a new thread would,
// with no value set; a Set outside Run there fails loudly (there is no
// telling when the callback ends, so an implicit context would pass on to
// the next thread); a Run works and leaves nothing.
func TestCgo_callbacksOfThreadsDoNotMix(t *testing.T) {
	const threads = 5
	v := contextvars.NewVar[int]("v")
	var results []result
	// States of other tests' exited goroutines may wait for a sweep.
	base := contextvars.ReadStats().Goroutines
	ThreadsOneAfterAnother(threads, func(i int) {
		r := result{goid: goid.Get()}
		_, r.sawBefore = v.Get()
		func() {
			defer func() { r.setErr, _ = recover().(error) }()
			v.Set(i)
		}()
		_ = contextvars.New().Run(func() error {
			v.Set(i)
			r.inRun = v.GetOr(-1)
			return nil
		})
		_, r.sawAfter = v.Get()
		r.statesLeft = contextvars.ReadStats().Goroutines
		results = append(results, r)
	})
	require.Len(t, results, threads)
	t.Logf("callbacks ran on goroutines %v", func() (ids []int64) {
		for _, r := range results {
			ids = append(ids, r.goid)
		}
		return ids
	}())
	for i, r := range results {
		assert.False(t, r.sawBefore, "thread %d sees no value on entry", i)
		require.Error(t, r.setErr, "thread %d: Set outside Run in a callback fails loudly", i)
		assert.True(t, errors.Is(r.setErr, contextvars.ErrOutsideRun))
		assert.Contains(t, r.setErr.Error(), `<ContextVar name='v'>`)
		assert.Contains(t, r.setErr.Error(), "cgo callback")
		assert.Equal(t, i, r.inRun, "thread %d: Run works", i)
		assert.False(t, r.sawAfter, "thread %d: the Run's value stays in the Run", i)
		assert.LessOrEqual(t, r.statesLeft, base, "thread %d: nothing left in the registry", i)
	}
}

// TestCgo_callbackOnGoGoroutine: a callback from C code that a Go goroutine
// called runs on that goroutine, whose id is its own: a Set outside Run
// there makes the goroutine's implicit context as anywhere else.
func TestCgo_callbackOnGoGoroutine(t *testing.T) {
	v := contextvars.NewVar[int]("v")
	done := make(chan int)
	go func() {
		CallHere(7, func(i int) { v.Set(i) })
		done <- v.GetOr(-1)
	}()
	assert.Equal(t, 7, <-done)
}
