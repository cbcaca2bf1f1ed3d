package contextvars_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-contextvars/contextvars"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// labelRuns counts runs of TestRun_pprofLabels.
var labelRuns int

// goroutineLabelsShown reports whether the goroutine profile shows a
// goroutine labelled request=id.
func goroutineLabelsShown(t *testing.T, id string) bool {
	var b strings.Builder
	require.NoError(t, pprof.Lookup("goroutine").WriteTo(&b, 1))
	return strings.Contains(b.String(), `"request":"`+id+`"`)
}

// TestRun_pprofLabels checks that the package neither changes the labels
// set with runtime/pprof nor depends on them, and that theirs do not change
// ours.
func TestRun_pprofLabels(t *testing.T) {
	v := contextvars.NewVar[string]("v")
	// Label values unique to this run: the goroutine profile is global.
	labelRuns++
	id, id2 := fmt.Sprint("run-", labelRuns), fmt.Sprint("run-", labelRuns, "-b")
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Dropped before done: a goroutine still exiting when the next
		// test sweeps would leave its implicit context to a later sweep,
		// which TestRun_leavesNothing would count as its own.
		defer contextvars.DropImplicit()
		v.Set("before labels")
		pprof.Do(context.Background(), pprof.Labels("request", id), func(ctx context.Context) {
			assert.Equal(t, "before labels", v.GetOr(""), "pprof.Do does not change our context")
			v.Set("x")
			require.NoError(t, contextvars.New().Run(func() error {
				v.Set("y")
				contextvars.CopyContext()
				assert.True(t, goroutineLabelsShown(t, id), "labels inside Run")
				return nil
			}))
			child := make(chan struct{})
			contextvars.Go(func() { close(child) })
			<-child
			assert.Equal(t, "x", v.GetOr(""))
			got, _ := pprof.Label(ctx, "request")
			assert.Equal(t, id, got)
			assert.True(t, goroutineLabelsShown(t, id), "labels after Set, Run, CopyContext, Go")
		})
		// The child started by Go inherited the labels and may not have
		// exited yet; wait for it to go.
		assert.Eventually(t, func() bool { return !goroutineLabelsShown(t, id) }, 10*time.Second, time.Millisecond,
			"pprof.Do restored the labels")
		assert.Equal(t, "x", v.GetOr(""), "restoring the labels does not change our context")
		pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("request", id2)))
		assert.Equal(t, "x", v.GetOr(""), "SetGoroutineLabels does not change our context")
		v.Set("z")
		assert.True(t, goroutineLabelsShown(t, id2))
	}()
	<-done
}

// TestRun_leavesNothing checks that goroutines whose only use is Run (or
// Call, or Go) leave no registry entry, however they leave, so that no sweep
// is ever needed for them.
func TestRun_leavesNothing(t *testing.T) {
	n := 100_000
	if !contextvars.Long() {
		n = 20_000
	}
	v := contextvars.NewVar[int]("v")
	// busy is entered by another goroutine throughout: a Run of it fails
	// with ErrAlreadyEntered, and must give back the state it claimed.
	busy, entered, release := contextvars.New(), make(chan struct{}), make(chan struct{})
	go func() { _ = busy.Run(func() error { close(entered); <-release; return nil }) }()
	<-entered
	defer close(release)
	// Entries other tests left behind are swept now: the timer would drop
	// them meanwhile (cheap sweeps, sweep.go), and this test counts drops.
	// (A cheap sweep may run, for entries of live goroutines; it must
	// find nothing of this test's to drop.)
	contextvars.SweepNow()
	liveBefore, droppedBefore := contextvars.RegistryLive(), contextvars.RegistryDropped()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			defer func() { _ = recover() }()
			switch i % 6 {
			case 0:
				_ = contextvars.New().Run(func() error { v.Set(i); return nil })
			case 1:
				_, _ = contextvars.Call(contextvars.New(), func() (int, error) { v.Set(i); return v.GetOr(0), nil })
			case 2:
				_ = contextvars.New().Run(func() error { v.Set(i); runtime.Goexit(); return nil })
			case 3:
				_ = contextvars.New().Run(func() error { v.Set(i); panic("boom") })
			case 4:
				// Nested Runs, the inner one the outermost's copy.
				_ = contextvars.New().Run(func() error {
					v.Set(i)
					return contextvars.CopyContext().Run(func() error { v.Set(-i); return nil })
				})
			case 5:
				if err := busy.Run(func() error { return nil }); !errors.Is(err, contextvars.ErrAlreadyEntered) {
					t.Errorf("Run of a context entered elsewhere: %v", err)
				}
			}
			if i%997 == 0 {
				if all, _ := contextvars.RegistryEntries(); all > 64+liveBefore+8 {
					t.Errorf("%d registry entries while at most 64 goroutines run", all)
				}
			}
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, contextvars.RegistryLive(), liveBefore, "no registry entry left behind")
	assert.Equal(t, droppedBefore, contextvars.RegistryDropped(), "no sweep was needed")
}

// TestGo_leavesNothing checks that 1,000,000 Go calls leave no registry
// entries and bounded memory.
func TestGo_leavesNothing(t *testing.T) {
	n := 1_000_000
	if !contextvars.Long() {
		n = 100_000
	}
	v := contextvars.NewVar[int]("v")
	before := contextvars.HeapInUse()
	// Entries other tests left behind are swept now: the timer would drop
	// them meanwhile (cheap sweeps, sweep.go), and this test counts drops.
	// (A cheap sweep may run, for entries of live goroutines; it must
	// find nothing of this test's to drop.)
	contextvars.SweepNow()
	liveBefore, droppedBefore := contextvars.RegistryLive(), contextvars.RegistryDropped()
	contextvars.Churn(n, func(f func()) { contextvars.Go(f) }, func(i int) { v.Set(i) })
	after := contextvars.HeapInUse()
	t.Logf("%d Go calls: heap growth %d KiB, registry entries %d -> %d", n, (int64(after)-int64(before))>>10, liveBefore, contextvars.RegistryLive())
	assert.Less(t, int64(after)-int64(before), int64(8<<20), "heap growth is bounded")
	// wg.Done runs inside fn, before Run's exit frees the state: allow
	// a moment for the last ones.
	assert.Eventually(t, func() bool { return contextvars.RegistryLive() <= liveBefore }, 10*time.Second, time.Millisecond)
	assert.Equal(t, droppedBefore, contextvars.RegistryDropped(), "Go removed the entries; no sweep was needed")
}

// test_context_run_1
func TestContext_Run_nilFunc(t *testing.T) {
	c := contextvars.New()
	err := c.Run(nil)
	require.Error(t, err)
	assert.Regexp(t, "^contextvars: ", err.Error())
	_, err = contextvars.Call[int](c, nil)
	require.Error(t, err)
	assert.Regexp(t, "^contextvars: ", err.Error())
}

// test_context_run_2: ctx.run passes through what the callable returns.
func TestCall_returnsResults(t *testing.T) {
	c := contextvars.New()
	got, err := contextvars.Call(c, func() ([]string, error) { return []string{"bar"}, nil })
	require.NoError(t, err)
	assert.Equal(t, []string{"bar"}, got)

	boom := errors.New("boom")
	n, err := contextvars.Call(c, func() (int, error) { return 7, boom })
	assert.Equal(t, 7, n, "Call returns fn's value with its error")
	assert.Same(t, boom, err)
}

// test_context_run_3: an exception in the callable propagates.
func TestContext_Run_propagates(t *testing.T) {
	c := contextvars.New()
	boom := errors.New("division by zero")
	assert.Same(t, boom, c.Run(func() error { return boom }), "Run returns fn's error")
	assert.PanicsWithValue(t, "division by zero", func() {
		_ = c.Run(func() error { panic("division by zero") })
	}, "Run lets fn's panic through unchanged")
	assert.NoError(t, c.Run(func() error { return nil }), "a panic leaves c enterable")
}

// test_context_run_4
func TestContext_Run_nested(t *testing.T) {
	isolated(t, func() {
		ctx1, ctx2 := contextvars.New(), contextvars.New()
		v := contextvars.NewVar[string]("var")

		func2 := func() error {
			_, ok := v.Get()
			assert.False(t, ok, "var is unset in ctx2")
			return nil
		}
		func1 := func() (*contextvars.Context, error) {
			_, ok := v.Get()
			assert.False(t, ok, "var is unset in ctx1 at first")
			v.Set("spam")
			require.NoError(t, ctx2.Run(func2))
			assert.Equal(t, "spam", v.GetOr(""), "ctx2.Run restored ctx1")

			cur := contextvars.CopyContext()
			assert.Equal(t, 1, cur.Len())
			got, _ := cur.Get(v)
			assert.Equal(t, "spam", got)
			return cur, nil
		}
		returned, err := contextvars.Call(ctx1, func1)
		require.NoError(t, err)
		assert.Equal(t, collect(ctx1), collect(returned), "the copy equals ctx1")
		got, ok := returned.Get(v)
		assert.True(t, ok)
		assert.Equal(t, "spam", got)
		assert.True(t, returned.Contains(v))
	})
}

// test_context_run_5: changes made before an error stay inside the context.
func TestContext_Run_errorKeepsChangesInside(t *testing.T) {
	isolated(t, func() {
		c := contextvars.New()
		v := contextvars.NewVar[string]("var")
		boom := errors.New("boom")
		err := c.Run(func() error {
			_, ok := v.Get()
			assert.False(t, ok)
			v.Set("spam")
			return boom
		})
		assert.Same(t, boom, err)
		_, ok := v.Get()
		assert.False(t, ok, "the Set inside Run is not visible outside")
		got, _ := v.In(c)
		assert.Equal(t, "spam", got, "the Set inside Run is kept in c")
	})
}

// test_context_run_6
func TestContext_Run_getDefault(t *testing.T) {
	c := contextvars.New()
	v := contextvars.NewVarWithDefault("a", 0)
	require.NoError(t, c.Run(func() error {
		got, ok := v.Get()
		assert.True(t, ok)
		assert.Equal(t, 0, got, "v.Get() returns the default")
		_, ok = c.Get(v)
		assert.False(t, ok, "c.Get(v) ignores the default")

		v.Set(42)
		assert.Equal(t, 42, v.GetOr(-1))
		got2, ok := c.Get(v)
		assert.True(t, ok)
		assert.Equal(t, 42, got2)
		return nil
	}))
}

// test_context_run_7 and test_context_manager_is_not_reentrant: a context
// cannot be entered again while it is entered.
func TestContext_Run_recursive(t *testing.T) {
	c := contextvars.New()
	var inner error
	called := false
	require.NoError(t, c.Run(func() error {
		inner = c.Run(func() error { called = true; return nil })
		return nil
	}))
	require.ErrorIs(t, inner, contextvars.ErrAlreadyEntered)
	assert.Contains(t, inner.Error(), "is already entered")
	assert.Equal(t, "contextvars: cannot enter context: <Context 0 vars> is already entered", inner.Error())
	assert.False(t, called, "fn is not called when the context is entered")

	_, err := contextvars.Call(c, func() (int, error) {
		return contextvars.Call(c, func() (int, error) { return 1, nil })
	})
	assert.ErrorIs(t, err, contextvars.ErrAlreadyEntered, "Call inside Call on one context")
	assert.NoError(t, c.Run(func() error { return nil }), "c can be entered again afterwards")
}

// test_context_manager_nested, in Go: nested Runs of copies.
func TestContext_Run_nestedCopies(t *testing.T) {
	isolated(t, func() {
		cvar := contextvars.NewVarWithDefault("cvar", "default")
		outer := contextvars.CopyContext()
		require.NoError(t, outer.Run(func() error {
			cvar.Set("outer")
			inner := contextvars.CopyContext()
			assert.NotSame(t, outer, inner)
			require.NoError(t, inner.Run(func() error {
				assert.Equal(t, "outer", cvar.GetOr(""))
				cvar.Set("inner")
				got, _ := cvar.In(outer)
				assert.Equal(t, "outer", got)
				assert.Equal(t, "inner", cvar.GetOr(""))
				return nil
			}))
			assert.Equal(t, "outer", cvar.GetOr(""))
			return nil
		}))
		got, _ := cvar.Get()
		assert.Equal(t, "default", got)
	})
}

// test_context_manager_enter_again_after_exit
func TestContext_Run_enterAgain(t *testing.T) {
	isolated(t, func() {
		cvar := contextvars.NewVarWithDefault("cvar", "initial")
		ctx := contextvars.CopyContext()
		require.NoError(t, ctx.Run(func() error { cvar.Set("updated"); return nil }))
		got, _ := cvar.Get()
		assert.Equal(t, "initial", got)
		require.NoError(t, ctx.Run(func() error {
			got, _ := cvar.Get()
			assert.Equal(t, "updated", got)
			return nil
		}))
		got, _ = cvar.Get()
		assert.Equal(t, "initial", got)
	})
}

// TestContext_Run_nilContext checks the nil receiver.
func TestContext_Run_nilContext(t *testing.T) {
	var c *contextvars.Context
	err := c.Run(func() error { return nil })
	require.Error(t, err)
	assert.Regexp(t, "^contextvars: ", err.Error())
	_, err = contextvars.Call(c, func() (int, error) { return 0, nil })
	require.Error(t, err)
	assert.Regexp(t, "^contextvars: ", err.Error())
}

// TestContext_Run_panicRestores checks that a panic in fn restores the
// previous context and leaves c enterable, and that the value is unchanged.
func TestContext_Run_panicRestores(t *testing.T) {
	isolated(t, func() {
		v := contextvars.NewVarWithDefault("v", "outside")
		v.Set("outer")
		c := contextvars.New()
		type marker struct{ n int }
		func() {
			defer func() {
				r := recover()
				assert.Equal(t, marker{7}, r, "the panic value is unchanged")
				assert.Equal(t, "outer", v.GetOr(""), "the previous context is current again")
			}()
			_ = c.Run(func() error {
				v.Set("inside")
				panic(marker{7})
			})
		}()
		got, _ := v.In(c)
		assert.Equal(t, "inside", got)
		assert.NoError(t, c.Run(func() error { return nil }), "c is not left entered")
	})
}

// TestContext_Run_goexitRestores checks that runtime.Goexit inside fn
// restores the previous context for the goroutine's deferred calls and
// leaves c enterable.
func TestContext_Run_goexitRestores(t *testing.T) {
	c := contextvars.New()
	v := contextvars.NewVarWithDefault("v", "default")
	seen := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		v.Set("implicit")
		defer func() { seen <- v.GetOr("") }()
		_ = c.Run(func() error {
			v.Set("inside")
			runtime.Goexit()
			return nil
		})
	}()
	<-done
	assert.Equal(t, "implicit", <-seen, "deferred calls after Goexit see the goroutine's own context")
	assert.NoError(t, c.Run(func() error { return nil }), "c is not left entered")
	got, _ := v.In(c)
	assert.Equal(t, "inside", got)
}

// TestContext_Run_otherGoroutine holds goroutine A inside c.Run while B
// tries to enter c: B is refused, without its fn being called, until A
// leaves.
func TestContext_Run_otherGoroutine(t *testing.T) {
	c := contextvars.New()
	inside, release := make(chan struct{}), make(chan struct{})
	aDone := make(chan error)
	go func() {
		aDone <- c.Run(func() error {
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside

	called := false
	err := c.Run(func() error { called = true; return nil })
	require.ErrorIs(t, err, contextvars.ErrAlreadyEntered)
	assert.False(t, called)
	_, err = contextvars.Call(c, func() (int, error) { called = true; return 0, nil })
	assert.ErrorIs(t, err, contextvars.ErrAlreadyEntered)
	assert.False(t, called)

	// A different context nests normally meanwhile.
	assert.NoError(t, contextvars.New().Run(func() error { return nil }))

	close(release)
	require.NoError(t, <-aDone)
	assert.NoError(t, c.Run(func() error { called = true; return nil }))
	assert.True(t, called, "c can be entered once A has left")
}

// TestGo checks that Go runs fn in a copy of the caller's context.
func TestGo(t *testing.T) {
	isolated(t, func() {
		v := contextvars.NewVarWithDefault("v", "default")
		v.Set("parent")
		done := make(chan string)
		contextvars.Go(func() {
			got := v.GetOr("")
			v.Set("child")
			done <- got + "/" + v.GetOr("")
		})
		v.Set("parent later")
		assert.Equal(t, "parent/child", <-done, "fn sees the context as it was when Go was called")
		assert.Equal(t, "parent later", v.GetOr(""), "fn's Set does not reach the caller")
	})
	assert.PanicsWithError(t, "contextvars: nil func", func() { contextvars.Go(nil) })
}

// TestGo_plainGoroutineStartsEmpty checks that a go statement starts with an
// empty context, not the parent's.
func TestGo_plainGoroutineStartsEmpty(t *testing.T) {
	isolated(t, func() {
		v := contextvars.NewVar[int]("v")
		v.Set(1)
		done := make(chan bool)
		go func() {
			_, ok := v.Get()
			done <- ok
		}()
		assert.False(t, <-done)
	})
}
