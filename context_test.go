package contextvars_test

import (
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

// TestContext_copyChainsDoNotLeak runs 20,000 generations of copies, each
// setting one of two vars to 1 KiB: the last context holds two values, and
// the heap must not keep the generations before it. (Tokens once held a
// pointer to their context, so each trie's leaves kept their contexts, and
// those contexts' tries, alive: this test grew the heap by 24 MiB.)
func TestContext_copyChainsDoNotLeak(t *testing.T) {
	const generations, size = 20_000, 1 << 10
	a, b := contextvars.NewVar[[]byte]("a"), contextvars.NewVar[[]byte]("b")
	before := contextvars.HeapInUse()
	c := contextvars.New()
	for i := range generations {
		c = c.Copy()
		require.NoError(t, c.Run(func() error {
			if i%2 == 0 {
				a.Set(make([]byte, size))
			} else {
				b.Set(make([]byte, size))
			}
			return nil
		}))
	}
	growth := int64(contextvars.HeapInUse()) - int64(before)
	t.Logf("%d generations: heap growth %d KiB (all values: %d KiB)", generations, growth>>10, generations*size>>10)
	assert.Equal(t, 2, c.Len())
	assert.Less(t, growth, int64(generations*size/20), "earlier generations are not retained")
	runtime.KeepAlive(c)
}

func TestLookup(t *testing.T) {
	n := contextvars.NewVarWithDefault("n", 7)
	isolated(t, func() {
		got, ok := contextvars.Lookup(n)
		assert.False(t, ok, "Lookup ignores the default")
		assert.Nil(t, got)
		n.Set(3)
		got, ok = contextvars.Lookup(n)
		assert.True(t, ok)
		assert.Equal(t, 3, got)
	})
	var nilVar *contextvars.Var[int]
	_, ok := contextvars.Lookup(nilVar)
	assert.False(t, ok, "Lookup(nil *Var)")
	_, ok = contextvars.Lookup(nil)
	assert.False(t, ok, "Lookup(nil)")
}
