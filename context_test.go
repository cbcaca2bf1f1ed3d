package contextvars_test

import (
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-contextvars/contextvars"
)

// isolated runs fn inside a new, empty context, as test_context.py's
// @isolated_context decorator does, so that tests sharing a goroutine do not
// see each other's vars.
func isolated(t *testing.T, fn func()) {
	t.Helper()
	require.NoError(t, contextvars.New().Run(func() error { fn(); return nil }))
}

// collect returns c's bindings as a map keyed by var name.
func collect(c *contextvars.Context) map[string]any {
	m := map[string]any{}
	for k, v := range c.All() {
		m[k.Name()] = v
	}
	return m
}

// Ports of CPython's Lib/test/test_context.py, class ContextTest. Each test
// names the Python test it ports; cases about Python-only matters (argument
// counting, subclassing, keyword arguments) have no Go counterpart.

// test_context_typerrors_1: ctx[1], 1 in ctx, ctx.get(1) raise TypeError. In
// Go a non-var key does not compile; a nil Key is the one bad key left.
func TestContext_nilKey(t *testing.T) {
	c := contextvars.New()
	_, ok := c.Get(nil)
	assert.False(t, ok, "c.Get(nil)")
	assert.False(t, c.Contains(nil), "c.Contains(nil)")
	var nilVar *contextvars.Var[int]
	_, ok = c.Get(nilVar)
	assert.False(t, ok, "c.Get((*Var[int])(nil))")
	assert.False(t, c.Contains(nilVar), "c.Contains((*Var[int])(nil))")
}

// test_context_get_context_1
func TestCopyContext_returnsContext(t *testing.T) {
	a, b := contextvars.CopyContext(), contextvars.CopyContext()
	require.NotNil(t, a)
	assert.NotSame(t, a, b, "CopyContext returns a distinct *Context on every call")
	assert.NotSame(t, contextvars.New(), contextvars.New(), "New returns a distinct *Context on every call")
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

// TestVar_setResetAndCopies ports test_context_getset_1: Set, Reset and
// their tokens, and copies taken between them that do not change.
func TestVar_setResetAndCopies(t *testing.T) {
	isolated(t, func() {
		c := contextvars.NewVar[any]("c")
		_, ok := c.Get()
		assert.False(t, ok, "LookupError")
		assert.Nil(t, c.GetOr(nil))

		t0 := c.Set(42)
		assert.Equal(t, 42, c.GetOr(nil))
		_, ok = t0.OldValue()
		assert.False(t, ok, "t0.old_value is Token.MISSING")
		assert.Same(t, c, t0.Var())

		tok := c.Set("spam")
		assert.Equal(t, "spam", c.GetOr(nil))
		old, ok := tok.OldValue()
		assert.True(t, ok)
		assert.Equal(t, 42, old)
		require.NoError(t, c.Reset(tok))
		assert.Equal(t, 42, c.GetOr(nil))

		c.Set("spam2")
		err := c.Reset(tok)
		require.ErrorIs(t, err, contextvars.ErrTokenUsed)
		assert.Contains(t, err.Error(), "has already been used")
		assert.Equal(t, "spam2", c.GetOr(nil), "a refused Reset changes nothing")

		ctx1 := contextvars.CopyContext()
		assert.True(t, ctx1.Contains(c))

		require.NoError(t, c.Reset(t0))
		assert.ErrorIs(t, c.Reset(t0), contextvars.ErrTokenUsed)
		assert.Nil(t, c.GetOr(nil))

		assert.True(t, ctx1.Contains(c), "the copy did not change")
		got, _ := ctx1.Get(c)
		assert.Equal(t, "spam2", got)
		assert.Equal(t, 1, ctx1.Len())
		assert.Equal(t, map[string]any{"c": "spam2"}, collect(ctx1))
		assert.Equal(t, []any{"spam2"}, slices.Collect(ctx1.Values()))
		assert.Equal(t, []contextvars.Key{c}, slices.Collect(ctx1.Keys()))

		ctx2 := contextvars.CopyContext()
		assert.False(t, ctx2.Contains(c))
		_, ok = ctx2.Get(c)
		assert.False(t, ok, "KeyError")
		assert.Equal(t, 0, ctx2.Len())
		assert.Empty(t, slices.Collect(ctx2.Keys()))
	})
}

// TestVar_Reset_tokenOfAnotherVar ports test_context_getset_2.
func TestVar_Reset_tokenOfAnotherVar(t *testing.T) {
	isolated(t, func() {
		v1 := contextvars.NewVar[int]("v1")
		v2 := contextvars.NewVar[int]("v2")
		t1 := v1.Set(42)
		// A token of another var of the same type: Go's types rule out the
		// rest.
		err := v2.Reset(t1)
		require.ErrorIs(t, err, contextvars.ErrTokenVar)
		assert.Contains(t, err.Error(), "by a different")
		assert.NoError(t, v1.Reset(t1), "the refused Reset did not use the token")
	})
}

// TestVar_setInRunShowsInContext ports test_context_getset_3: a Set and
// its Reset inside Run show in the context's reads.
func TestVar_setInRunShowsInContext(t *testing.T) {
	isolated(t, func() {
		c := contextvars.NewVarWithDefault("c", 42)
		ctx := contextvars.New()
		require.NoError(t, ctx.Run(func() error {
			assert.Equal(t, -1, c.GetOr(-1), "GetOr's argument beats the var's default")
			got, _ := c.Get()
			assert.Equal(t, 42, got)
			_, ok := ctx.Get(c)
			assert.False(t, ok, "KeyError")
			assert.False(t, ctx.Contains(c))
			assert.Empty(t, slices.Collect(ctx.Keys()))

			tok := c.Set(1)
			assert.Equal(t, []contextvars.Key{c}, slices.Collect(ctx.Keys()))
			v, _ := ctx.Get(c)
			assert.Equal(t, 1, v)

			require.NoError(t, c.Reset(tok))
			assert.Empty(t, slices.Collect(ctx.Keys()))
			_, ok = ctx.Get(c)
			assert.False(t, ok)
			return nil
		}))
	})
}

// TestVar_Reset_tokenOfAnotherContext ports test_context_getset_4.
func TestVar_Reset_tokenOfAnotherContext(t *testing.T) {
	isolated(t, func() {
		c := contextvars.NewVarWithDefault("c", 42)
		ctx := contextvars.New()
		tok, err := contextvars.Call(ctx, func() (*contextvars.Token[int], error) { return c.Set(1), nil })
		require.NoError(t, err)
		err = c.Reset(tok)
		require.ErrorIs(t, err, contextvars.ErrTokenContext)
		assert.Contains(t, err.Error(), "different Context")
		assert.NoError(t, ctx.Run(tok.Reset), "the token still works in its own context")
	})
}

// TestVar_setInCopyLeavesCaller ports test_context_getset_5: a mutable
// value set again in a copied context does not change the caller's.
func TestVar_setInCopyLeavesCaller(t *testing.T) {
	isolated(t, func() {
		c := contextvars.NewVarWithDefault("c", []int{42})
		c.Set([]int{})
		require.NoError(t, contextvars.CopyContext().Run(func() error {
			c.Set([]int{})
			c.Set(append(c.GetOr(nil), 42))
			assert.Equal(t, []int{42}, c.GetOr(nil))
			return nil
		}))
		assert.Equal(t, []int{}, c.GetOr(nil))
	})
}

// test_context_copy_1
func TestContext_Copy(t *testing.T) {
	ctx1 := contextvars.New()
	c := contextvars.NewVarWithDefault("c", 42)
	in := func(ctx *contextvars.Context) int { v, _ := c.In(ctx); return v }

	ctx2Fun := func() error {
		assert.Equal(t, 10, c.GetOr(0))
		c.Set(30)
		assert.Equal(t, 30, c.GetOr(0))
		return nil
	}
	require.NoError(t, ctx1.Run(func() error {
		c.Set(10)
		ctx2 := ctx1.Copy()
		assert.Equal(t, 10, in(ctx2))

		c.Set(20)
		assert.Equal(t, 20, in(ctx1))
		assert.Equal(t, 10, in(ctx2), "a Set after Copy does not reach the copy")

		require.NoError(t, ctx2.Run(ctx2Fun))
		assert.Equal(t, 20, in(ctx1))
		assert.Equal(t, 30, in(ctx2))
		return nil
	}))
	var nilCtx *contextvars.Context
	assert.Equal(t, 0, nilCtx.Copy().Len(), "a nil context copies as empty")
}

// test_context_threads_1: each goroutine's implicit context is its own.
func TestContext_goroutines(t *testing.T) {
	cvar := contextvars.NewVar[int]("cvar")
	results := make([]int, 10)
	var wg sync.WaitGroup
	for num := range 10 {
		wg.Go(func() {
			for i := range 10 {
				cvar.Set(num + i)
				runtime.Gosched()
				got, ok := cvar.Get()
				assert.True(t, ok)
				assert.Equal(t, num+i, got)
			}
			results[num] = num
		})
	}
	wg.Wait()
	assert.Equal(t, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, results)
	_, ok := cvar.Get()
	assert.False(t, ok, "no goroutine's Set reached this one")
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

// TestContext_reads is the table of Context's read methods.
func TestContext_reads(t *testing.T) {
	a := contextvars.NewVar[int]("a")
	b := contextvars.NewVarWithDefault("b", "B")
	unset := contextvars.NewVarWithDefault("unset", 1.5)
	full := contextvars.New()
	require.NoError(t, full.Run(func() error {
		a.Set(1)
		b.Set("x")
		return nil
	}))
	var nilCtx *contextvars.Context

	cases := []struct {
		name    string
		c       *contextvars.Context
		key     contextvars.Key
		want    any
		wantOK  bool
		wantLen int
		wantStr string
	}{
		{"empty", contextvars.New(), a, nil, false, 0, "<Context 0 vars>"},
		{"zero Context", &contextvars.Context{}, a, nil, false, 0, "<Context 0 vars>"},
		{"nil Context", nilCtx, a, nil, false, 0, "<Context 0 vars>"},
		{"set int", full, a, 1, true, 2, "<Context 2 vars>"},
		{"set string", full, b, "x", true, 2, "<Context 2 vars>"},
		{"default is not a value", full, unset, nil, false, 2, "<Context 2 vars>"},
		{"nil key", full, nil, nil, false, 2, "<Context 2 vars>"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tc.c.Get(tc.key)
			assert.Equal(t, tc.wantOK, ok, "c.Get(%v) ok", tc.key)
			assert.Equal(t, tc.want, got, "c.Get(%v)", tc.key)
			assert.Equal(t, tc.wantOK, tc.c.Contains(tc.key), "c.Contains(%v)", tc.key)
			assert.Equal(t, tc.wantLen, tc.c.Len(), "c.Len()")
			assert.Equal(t, tc.wantStr, tc.c.String(), "c.String()")
			assert.Len(t, slices.Collect(tc.c.Keys()), tc.wantLen, "c.Keys()")
			assert.Len(t, slices.Collect(tc.c.Values()), tc.wantLen, "c.Values()")
		})
	}
	one := contextvars.New()
	require.NoError(t, one.Run(func() error { a.Set(1); return nil }))
	assert.Equal(t, "<Context 1 var>", one.String())
}

// TestContext_All_snapshot checks that a loop walks the snapshot taken when
// it starts, and that breaking out of it works.
func TestContext_All_snapshot(t *testing.T) {
	c := contextvars.New()
	vars := make([]*contextvars.Var[int], 100)
	require.NoError(t, c.Run(func() error {
		for i := range vars {
			vars[i] = contextvars.NewVar[int](fmt.Sprint("v", i))
			vars[i].Set(i)
		}
		seen := 0
		for k := range c.All() {
			seen++
			// Setting vars during the loop neither blocks it nor shows
			// up in it.
			contextvars.NewVar[int]("new").Set(0)
			_ = k
		}
		assert.Equal(t, 100, seen)
		assert.Equal(t, 200, c.Len())
		return nil
	}))

	n := 0
	for range c.All() {
		n++
		if n == 3 {
			break
		}
	}
	assert.Equal(t, 3, n, "break stops the loop")
	for range c.Keys() {
		break
	}
	for range c.Values() {
		break
	}

	want := map[contextvars.Key]any{}
	for i, v := range vars {
		want[v] = i
	}
	got := maps.Collect(c.All())
	for k, v := range want {
		assert.Equal(t, v, got[k], "value of %v", k)
	}
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

// TestContext_concurrentReaders reads a context from several goroutines
// while its owner sets and resets vars. Under -race this checks the
// publication of roots, and that nothing but Reset touches a token's state
// (which a binding of an int shares its memory with); each reader checks
// that it sees a complete state.
func TestContext_concurrentReaders(t *testing.T) {
	c := contextvars.New()
	const nvars = 40
	vars := make([]*contextvars.Var[int], nvars)
	for i := range vars {
		vars[i] = contextvars.NewVar[int](fmt.Sprint("v", i))
	}
	// extra is set and reset in each round, while readers hold snapshots
	// with its binding in them.
	extra := contextvars.NewVar[int]("extra")
	require.NoError(t, c.Run(func() error { extra.Set(0); return nil }))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	readUntil(&wg, stop, 3, func() {
		// The owner sets vars in order, all to the same round number, so
		// a complete state is a prefix of vars set to r and the rest to
		// r-1 (or unset in round 0).
		n := 0
		for range c.All() {
			n++
		}
		assert.LessOrEqual(t, n, nvars+1)
		snap := c.Copy()
		assert.Equal(t, snap.Len(), len(slices.Collect(snap.Keys())), "Len agrees with the walk of one snapshot")
		first, _ := vars[0].In(snap)
		for _, v := range vars {
			if got, ok := v.In(snap); ok {
				assert.True(t, got == first || got == first-1, "torn state: %d beside %d", got, first)
			}
		}
		// A Set in a copy walks the shared trie too.
		assert.NoError(t, snap.Run(func() error { vars[0].Set(-1); return nil }))
	})
	require.NoError(t, c.Run(func() error {
		for round := 1; round <= 200; round++ {
			tok := extra.Set(round)
			for _, v := range vars {
				v.Set(round)
			}
			if err := extra.Reset(tok); err != nil {
				return err
			}
		}
		return nil
	}))
	close(stop)
	wg.Wait()
	assert.Equal(t, nvars+1, c.Len())
	got, _ := extra.In(c)
	assert.Equal(t, 0, got, "every Set of extra was reset")
}

// TestNew_isolatedFromCaller checks that New and CopyContext do not share
// state with the caller's implicit context.
func TestNew_isolatedFromCaller(t *testing.T) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		v := contextvars.NewVar[int]("v")
		v.Set(1)
		cp := contextvars.CopyContext()
		v.Set(2)
		got, _ := v.In(cp)
		assert.Equal(t, 1, got, "a snapshot never changes under you")
		assert.Equal(t, 0, contextvars.New().Len())
	}()
	<-done
}
