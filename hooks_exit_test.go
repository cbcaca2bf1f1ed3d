package contextvars

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestOnSwitch_hookEndsGoroutine: a switch hook that calls runtime.Goexit
// (t.FailNow or require.* in a test's hook) or panics (recovered upstream,
// by net/http's per-request recover say), on entering or on leaving, leaves
// the context free to enter again and the goroutine's state out of the
// registry: Run undoes its switch on every way out, a hook's included.
// (Found by the session-11 break review.)
func TestOnSwitch_hookEndsGoroutine(t *testing.T) {
	tests := []struct {
		name    string
		onEnter bool
		end     func()
	}{
		{"Goexit on entering", true, runtime.Goexit},
		{"Goexit on leaving", false, runtime.Goexit},
		{"panic on entering", true, func() { panic("hook") }},
		{"panic on leaving", false, func() { panic("hook") }},
	}
	for _, tt := range tests {
		for _, how := range []string{"Run", "Call", "GoIn"} {
			if how == "GoIn" && tt.name[:5] == "panic" {
				continue // an unrecovered panic on GoIn's goroutine ends the process
			}
			t.Run(tt.name+"/"+how, func(t *testing.T) {
				before := registryLive()
				c := New()
				fired := make(chan struct{}, 1)
				remove := OnSwitch(func(from, to *Context) {
					if (tt.onEnter && to == c) || (!tt.onEnter && from == c) {
						fired <- struct{}{}
						tt.end()
					}
				})
				switch how {
				case "GoIn":
					assert.NoError(t, GoIn(c, func() {}))
					<-fired
				default:
					done := make(chan struct{})
					go func() {
						defer close(done)
						defer func() { _ = recover() }()
						if how == "Run" {
							_ = c.Run(func() error { return nil })
						} else {
							_, _ = Call(c, func() (int, error) { return 1, nil })
						}
					}()
					<-fired
					<-done
				}
				remove()
				// GoIn's goroutine may still be on its way out (a
				// bound, so that a c left entered fails, not hangs).
				for end := time.Now().Add(10 * time.Second); how == "GoIn" && time.Now().Before(end) &&
					c.Run(func() error { return nil }) != nil; {
					runtime.Gosched()
				}
				assert.NoError(t, c.Run(func() error { return nil }), "c is free to enter again")
				assert.Equal(t, before, registryLive(), "no goroutine state left behind")
			})
		}
	}
}

// TestDropImplicit_hookPanics: a switch hook that panics on the
// switch DropImplicit now makes (implicit → nil) keeps DropImplicit from
// dropping anything: the goroutine keeps its implicit context and its values.
// Behind a recovering middleware outside httpvars.Handler (whose deferred
// DropImplicit is the one that panics), the keep-alive goroutine would
// serve the next request with the last one's vars. (Session-11 review.)
func TestDropImplicit_hookPanics(t *testing.T) {
	v := NewVar[string]("drop")
	var armed atomic.Bool
	armed.Store(true)
	remove := OnSwitch(func(from, to *Context) {
		if to == nil && from != nil {
			if s, ok := v.In(from); ok && s == "req-1" && armed.Swap(false) {
				panic("hook")
			}
		}
	})
	defer remove()
	done := make(chan struct{})
	var got string
	var ok, dropped bool
	go func() {
		defer close(done)
		v.Set("req-1") // a middleware outside httpvars.Handler
		func() {
			defer func() { _ = recover() }() // a recovering middleware
			dropped = DropImplicit()
		}()
		got, ok = v.Get() // the next request on the connection
		DropImplicit()    // clean up what is left (the hook panics only once)
	}()
	<-done
	assert.False(t, ok, "after DropImplicit, the goroutine holds no value (got %q, dropped=%v)", got, dropped)
}

// TestOnSwitch_leaveHookPanicCallsLater: when a leave hook panics, the
// hooks registered after it are still called for leaving: the doc
// says the Run still undoes its switch calling every hook for leaving; a
// later hook such as pprofvars' would keep the left context's labels.
func TestOnSwitch_leaveHookPanicCallsLater(t *testing.T) {
	c := New()
	r1 := OnSwitch(func(from, to *Context) {
		if from == c {
			panic("first hook")
		}
	})
	defer r1()
	var mu sync.Mutex
	var leaves int
	r2 := OnSwitch(func(from, to *Context) {
		if from == c {
			mu.Lock()
			leaves++
			mu.Unlock()
		}
	})
	defer r2()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = recover() }()
		_ = c.Run(func() error { return nil })
	}()
	<-done
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, 1, leaves, "the second hook is called for leaving c")
}

// TestOnSwitch_registeredInsideRun: OnSwitch promises
// h is called "at every switch of contexts by any goroutine from now on".
// A hook registered while a goroutine is inside an outer Run sees the inner
// switches (outer>inner, inner>outer) and the leave of the outer Run
// (outer>nil), else pprofvars' hook would leave the outer context's labels
// on the goroutine after its outermost Run returned. (A first version of
// the session-11 hook change called on leaving only the hooks loaded on
// entering.)
func TestOnSwitch_registeredInsideRun(t *testing.T) {
	outer, inner := New(), New()
	name := func(c *Context) string {
		switch c {
		case nil:
			return "nil"
		case outer:
			return "outer"
		case inner:
			return "inner"
		}
		return "other"
	}
	var mu sync.Mutex
	var log []string
	entered, registered, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		_ = outer.Run(func() error {
			close(entered)
			<-registered
			return inner.Run(func() error { return nil })
		})
	}()
	<-entered
	remove := OnSwitch(func(from, to *Context) {
		if name(from) == "other" || name(to) == "other" || (from == nil && to == nil) {
			return
		}
		mu.Lock()
		log = append(log, fmt.Sprintf("%s>%s", name(from), name(to)))
		mu.Unlock()
	})
	defer remove()
	close(registered)
	<-done
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"outer>inner", "inner>outer", "outer>nil"}, log)
}

// TestOnSwitch_leaveHookDropsImplicit: SwitchHook's doc says that where
// DropImplicit ran inside a Run, leaving the outermost Run is a switch to
// nil, not to the dropped context. A leave hook runs inside the Run (the
// goroutine's current context is still the one it leaves), so a
// DropImplicit there is such a drop, and the goroutine does end in no
// context, and every later hook must be told the switch goes to nil, not
// to the dropped implicit context (a pprofvars hook after it would put
// that context's labels on the goroutine and leave them there).
// (Session-11 third review.)
func TestOnSwitch_leaveHookDropsImplicit(t *testing.T) {
	v := NewVar[string]("dropped by a hook")
	type result struct {
		toNil, has bool
	}
	done := make(chan result, 1)
	go func() {
		v.Set("implicit") // the goroutine's implicit context
		c := New()
		var r result
		remove1 := OnSwitch(func(from, to *Context) {
			if from == c {
				DropImplicit() // inside the Run: dropped as the Run returns
			}
		})
		remove2 := OnSwitch(func(from, to *Context) {
			if from == c {
				r.toNil = to == nil
			}
		})
		_ = c.Run(func() error { return nil })
		remove1()
		remove2()
		_, r.has = v.Get()
		done <- r
	}()
	r := <-done
	assert.False(t, r.has, "the implicit context was dropped")
	assert.True(t, r.toNil, "so the later hook must be told the switch goes to nil")
}

// TestOnSwitch_removedHooksDoNotPileUp: on a goroutine that holds an
// implicit context and never drops it (a worker, the main goroutine), each
// of 100 hooks is registered, called by a Run and removed, with another
// hook registered meanwhile: a removed hook is called on the switches of
// the Run it was called in, never after, and a Run allocates nothing. (A
// per-goroutine record of the hooks called, tried in session 13 so that a
// removed hook could undo its labels, made them pile up, each called on
// every later switch.)
func TestOnSwitch_removedHooksDoNotPileUp(t *testing.T) {
	c, v := New(), NewVar[int]("v")
	var calls [100]atomic.Int32
	allocs := make(chan float64)
	go func() {
		v.Set(1) // the implicit context, never dropped while the test runs
		defer DropImplicit()
		removeK := OnSwitch(func(from, to *Context) {})
		defer removeK()
		for i := range calls {
			remove := OnSwitch(func(from, to *Context) {
				if from == c || to == c {
					calls[i].Add(1)
				}
			})
			_ = c.Run(func() error {
				// A nested switch too, which the hook is told of.
				return New().Run(func() error { return nil })
			})
			remove()
		}
		allocs <- testing.AllocsPerRun(100, func() { _ = c.Run(func() error { return nil }) })
	}()
	assert.Zero(t, <-allocs, "allocations per Run")
	for i := range calls {
		assert.Equal(t, int32(4), calls[i].Load(), "calls of hook %d: implicit>c, c>inner, inner>c, c>implicit", i)
	}
}
