//go:build cgo

package cgotest

import (
	"errors"
	"sync"
	"testing"

	"github.com/go-contextvars/contextvars"
)

// TestSeams_concurrentCThreads: C threads calling into Go at once, each in
// a Run, with Go, Wrap and RunWith inside, never see each other's values;
// outside Run they see none and a Set panics loudly.
func TestSeams_concurrentCThreads(t *testing.T) {
	v := contextvars.NewVar[int]("v")
	var mu sync.Mutex
	var bad []string
	report := func(s string) { mu.Lock(); bad = append(bad, s); mu.Unlock() }
	ReviewThreadsAtOnce(8, func(i int) {
		if _, ok := v.Get(); ok {
			report("value seen outside Run")
		}
		func() {
			defer func() {
				r := recover()
				if err, ok := r.(error); !ok || !errors.Is(err, contextvars.ErrOutsideRun) {
					report("Set outside Run did not panic with ErrOutsideRun")
				}
			}()
			v.Set(i)
		}()
		_ = contextvars.New().Run(func() error {
			v.Set(i)
			var wg sync.WaitGroup
			got := make(chan int, 2)
			contextvars.Go(func() { got <- v.GetOr(-1) })
			wg.Go(contextvars.Wrap(func() { got <- v.GetOr(-1) }))
			wg.Wait()
			_ = contextvars.RunWith(func() error {
				if v.GetOr(-1) != i+100 {
					report("RunWith value")
				}
				return nil
			}, contextvars.Bind(v, i+100))
			for range 2 {
				if g := <-got; g != i {
					report("child saw another thread's value")
				}
			}
			if v.GetOr(-1) != i {
				report("value changed under the Run")
			}
			return nil
		})
		if _, ok := v.Get(); ok {
			report("value seen after Run")
		}
	})
	if len(bad) > 0 {
		t.Fatalf("%d problems, first: %s", len(bad), bad[0])
	}
}
