package peers

import (
	"context"
	"runtime/pprof"
	"sync"
	"testing"

	"github.com/go-contextvars/contextvars"
	"github.com/jtolds/gls"
	"github.com/timandy/routine"
)

// Benchmarks of the same operations in contextvars (impl=contextvars), in
// github.com/timandy/routine (impl=routine), in github.com/jtolds/gls
// (impl=gls) and with context.WithValue (impl=context), each body the
// idiomatic spelling of the operation in that library:
//
//	Get        read a value set earlier on the goroutine
//	Set        set a value, keeping nothing to undo it
//	ScopedSet  set a value for a scope and undo it: defer v.Set(x).Reset(),
//	           routine's Set then Remove, gls's SetValues around the scope,
//	           a context.WithValue layer passed down
//	Go         start a goroutine that inherits the values (and wait for it)
//	Request    a new goroutine that sets a request id and reads it three
//	           times, as a request handler does
//
// Run with: go test -run '^$' -bench . -benchmem -count 5 (from this
// directory), or bench/compare --peers from the project root.

var (
	sinkInt int
	sinkAny any
	sinkCtx context.Context
)

type ctxKey struct{}

func BenchmarkGet(b *testing.B) {
	b.Run("impl=contextvars", func(b *testing.B) {
		v := contextvars.NewVar[int]("v")
		_ = contextvars.New().Run(func() error {
			v.Set(1)
			b.ReportAllocs()
			s := 0
			for b.Loop() {
				x, _ := v.Get()
				s += x
			}
			sinkInt = s
			return nil
		})
	})
	b.Run("impl=routine", func(b *testing.B) {
		tl := routine.NewThreadLocal[int]()
		tl.Set(1)
		defer tl.Remove()
		b.ReportAllocs()
		s := 0
		for b.Loop() {
			s += tl.Get()
		}
		sinkInt = s
	})
	b.Run("impl=gls", func(b *testing.B) {
		mgr := gls.NewContextManager()
		mgr.SetValues(gls.Values{ctxKey{}: 1}, func() {
			b.ReportAllocs()
			s := 0
			for b.Loop() {
				x, _ := mgr.GetValue(ctxKey{})
				s += x.(int)
			}
			sinkInt = s
		})
	})
	b.Run("impl=context", func(b *testing.B) {
		ctx := context.WithValue(context.Background(), ctxKey{}, 1)
		b.ReportAllocs()
		s := 0
		for b.Loop() {
			s += ctx.Value(ctxKey{}).(int)
		}
		sinkInt = s
	})
}

func BenchmarkSet(b *testing.B) {
	b.Run("impl=contextvars", func(b *testing.B) {
		v := contextvars.NewVar[int]("v")
		_ = contextvars.New().Run(func() error {
			v.Set(0)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				v.Set(i)
			}
			return nil
		})
	})
	b.Run("impl=routine", func(b *testing.B) {
		tl := routine.NewThreadLocal[int]()
		tl.Set(0)
		defer tl.Remove()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			tl.Set(i)
		}
	})
	// gls has no plain set: a value lives for a SetValues call (ScopedSet).
	b.Run("impl=context", func(b *testing.B) {
		ctx := context.Background()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			sinkCtx = context.WithValue(ctx, ctxKey{}, i)
		}
	})
}

func BenchmarkScopedSet(b *testing.B) {
	b.Run("impl=contextvars", func(b *testing.B) {
		v := contextvars.NewVar[int]("v")
		_ = contextvars.New().Run(func() error {
			v.Set(0)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				func() {
					defer v.Set(i).Reset()
				}()
			}
			return nil
		})
	})
	b.Run("impl=routine", func(b *testing.B) {
		tl := routine.NewThreadLocal[int]()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			func() {
				tl.Set(i)
				defer tl.Remove()
			}()
		}
	})
	b.Run("impl=gls", func(b *testing.B) {
		mgr := gls.NewContextManager()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			mgr.SetValues(gls.Values{ctxKey{}: i}, func() {})
		}
	})
	b.Run("impl=context", func(b *testing.B) {
		ctx := context.Background()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			sinkCtx = context.WithValue(ctx, ctxKey{}, i)
		}
	})
}

// spawn starts one goroutine per iteration through start, each running
// work, and waits for them all.
func spawn(b *testing.B, start func(fn func()), work func()) {
	b.ReportAllocs()
	var wg sync.WaitGroup
	for b.Loop() {
		wg.Add(1)
		start(func() { work(); wg.Done() })
	}
	wg.Wait()
}

func BenchmarkGo(b *testing.B) {
	b.Run("impl=contextvars", func(b *testing.B) {
		v := contextvars.NewVar[int]("v")
		_ = contextvars.New().Run(func() error {
			v.Set(1)
			spawn(b, contextvars.Go, func() { x, _ := v.Get(); sinkInt = x })
			return nil
		})
	})
	b.Run("impl=routine", func(b *testing.B) {
		tl := routine.NewInheritableThreadLocal[int]()
		tl.Set(1)
		defer tl.Remove()
		spawn(b, func(fn func()) { routine.Go(fn) }, func() { sinkInt = tl.Get() })
	})
	b.Run("impl=gls", func(b *testing.B) {
		mgr := gls.NewContextManager()
		mgr.SetValues(gls.Values{ctxKey{}: 1}, func() {
			spawn(b, gls.Go, func() { x, _ := mgr.GetValue(ctxKey{}); sinkAny = x })
		})
	})
	b.Run("impl=context", func(b *testing.B) {
		ctx := context.WithValue(context.Background(), ctxKey{}, 1)
		spawn(b, func(fn func()) { go fn() }, func() { sinkAny = ctx.Value(ctxKey{}) })
	})
}

func BenchmarkRequest(b *testing.B) {
	b.Run("impl=contextvars", func(b *testing.B) {
		v := contextvars.NewVar[int]("request")
		spawn(b, func(fn func()) { go fn() }, func() {
			_ = contextvars.New().Run(func() error {
				v.Set(42)
				for range 3 {
					x, _ := v.Get()
					sinkInt = x
				}
				return nil
			})
		})
	})
	b.Run("impl=routine", func(b *testing.B) {
		tl := routine.NewThreadLocal[int]()
		spawn(b, func(fn func()) { go fn() }, func() {
			tl.Set(42)
			defer tl.Remove()
			for range 3 {
				sinkInt = tl.Get()
			}
		})
	})
	b.Run("impl=gls", func(b *testing.B) {
		mgr := gls.NewContextManager()
		spawn(b, func(fn func()) { go fn() }, func() {
			mgr.SetValues(gls.Values{ctxKey{}: 42}, func() {
				for range 3 {
					x, _ := mgr.GetValue(ctxKey{})
					sinkAny = x
				}
			})
		})
	})
	b.Run("impl=context", func(b *testing.B) {
		spawn(b, func(fn func()) { go fn() }, func() {
			ctx := context.WithValue(context.Background(), ctxKey{}, 42)
			for range 3 {
				sinkAny = ctx.Value(ctxKey{})
			}
		})
	})
}

// TestPprofLabels records what each library's value does when the goroutine
// sets pprof labels: contextvars keeps it (it never touches labels); routine
// keeps its values where the runtime keeps the goroutine's labels, so a
// label set afterwards replaces them. The routine and gls results are
// logged, not asserted: they describe the peers' versions pinned in go.mod.
func TestPprofLabels(t *testing.T) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		v := contextvars.NewVar[int]("v")
		tl := routine.NewThreadLocal[int]()
		v.Set(1)
		tl.Set(1)
		pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("k", "v")))
		if got, ok := v.Get(); !ok || got != 1 {
			t.Errorf("contextvars: after pprof.SetGoroutineLabels, v.Get() = %d, %v; want 1, true", got, ok)
		}
		t.Logf("routine: after pprof.SetGoroutineLabels, tl.Get() = %d (was 1)", tl.Get())
		mgr := gls.NewContextManager()
		mgr.SetValues(gls.Values{ctxKey{}: 1}, func() {
			pprof.Do(context.Background(), pprof.Labels("k", "v"), func(context.Context) {
				x, ok := mgr.GetValue(ctxKey{})
				t.Logf("gls: inside pprof.Do, GetValue = %v, %v (was 1)", x, ok)
			})
		})
	}()
	<-done
}
