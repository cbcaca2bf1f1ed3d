package contextvars_test

import (
	"errors"
	"runtime"
	"sync"
	"testing"

	"github.com/go-contextvars/contextvars"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestToken_isBindingWhenSmallAndPointerFree checks the classification that decides whether a
// token is the binding the trie keeps (one allocation per Set) or a second
// allocation beside it, and that Set allocates accordingly.
func TestToken_isBindingWhenSmallAndPointerFree(t *testing.T) {
	type flat struct {
		A int
		B [3]float64
		C struct{ D bool }
	}
	type withString struct {
		A int
		S string
	}
	cases := []struct {
		name      string
		set       func() // a Set of a var of the type, in a context of that var
		isBinding bool
		want      bool
	}{
		{"int", setter(1), contextvars.TokenIsBinding[int](), true},
		{"flat struct", setter(flat{A: 1}), contextvars.TokenIsBinding[flat](), true},
		{"[0]*int", setter([0]*int{}), contextvars.TokenIsBinding[[0]*int](), true},
		{"[64]byte", setter([64]byte{1}), contextvars.TokenIsBinding[[64]byte](), true},
		{"[65]byte: too large", setter([65]byte{1}), contextvars.TokenIsBinding[[65]byte](), false},
		{"string", setter("s"), contextvars.TokenIsBinding[string](), false},
		{"struct with string", setter(withString{S: "s"}), contextvars.TokenIsBinding[withString](), false},
		{"[]byte", setter([]byte{1}), contextvars.TokenIsBinding[[]byte](), false},
		{"*int", setter(new(int)), contextvars.TokenIsBinding[*int](), false},
		{"any", setter[any](1), contextvars.TokenIsBinding[any](), false},
		{"func", setter(func() {}), contextvars.TokenIsBinding[func()](), false},
		{"map", setter(map[int]int{}), contextvars.TokenIsBinding[map[int]int](), false},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, tc.isBinding, "tokenIsBinding for %s", tc.name)
		want := 2.0
		if tc.want {
			want = 1
		}
		assert.Equal(t, want, testing.AllocsPerRun(100, tc.set), "allocations of a Set of %s", tc.name)
	}
}

// setter returns a func that sets a new var of val's type to val in a
// context of that var alone: Set allocates its token and binding there and
// nothing else.
func setter[T any](val T) func() {
	v := contextvars.NewVar[T]("v")
	c := contextvars.New()
	return func() {
		_ = c.Run(func() error { v.Set(val); return nil })
	}
}

// test_token_contextmanager_with_default (Python 3.14): `with c.set(36):`.
func TestToken_Reset_deferWithDefault(t *testing.T) {
	c := contextvars.NewVarWithDefault("c", 42)
	require.NoError(t, contextvars.New().Run(func() error {
		func() {
			defer c.Set(36).Reset()
			got, _ := c.Get()
			assert.Equal(t, 36, got)
		}()
		got, _ := c.Get()
		assert.Equal(t, 42, got)
		return nil
	}))
}

// test_token_contextmanager_without_default (Python 3.14).
func TestToken_Reset_deferWithoutDefault(t *testing.T) {
	c := contextvars.NewVar[int]("c")
	require.NoError(t, contextvars.New().Run(func() error {
		func() {
			defer c.Set(36).Reset()
			got, _ := c.Get()
			assert.Equal(t, 36, got)
		}()
		_, ok := c.Get()
		assert.False(t, ok, "LookupError after the scope")
		return nil
	}))
}

// TestToken_nil checks the methods of a nil *Token.
func TestToken_nil(t *testing.T) {
	var tok *contextvars.Token[int]
	assert.Nil(t, tok.Var())
	_, ok := tok.OldValue()
	assert.False(t, ok)
	err := tok.Reset()
	require.ErrorIs(t, err, contextvars.ErrNilToken)
	assert.Regexp(t, "^contextvars: ", err.Error())
	assert.Equal(t, "<Token nil>", tok.String())
	assert.ErrorIs(t, (&contextvars.Token[int]{}).Reset(), contextvars.ErrNilToken)
}

// TestToken_resetRace lets goroutines race to Reset one token: the one in
// its context may win once; the others are refused.
func TestToken_resetRace(t *testing.T) {
	for range 20 {
		c, v := contextvars.New(), contextvars.NewVar[int]("v")
		tok, _ := contextvars.Call(c, func() (*contextvars.Token[int], error) { return v.Set(1), nil })
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() {
				if i == 0 {
					errs[i] = c.Run(tok.Reset)
					return
				}
				errs[i] = tok.Reset()
			})
		}
		wg.Wait()
		wins := 0
		for _, err := range errs {
			if err == nil {
				wins++
				continue
			}
			assert.True(t, errors.Is(err, contextvars.ErrTokenUsed) || errors.Is(err, contextvars.ErrTokenContext), "%v", err)
		}
		assert.Equal(t, 1, wins)
		assert.Equal(t, 0, c.Len())
	}
}

// TestVar_setAndResetAllocateNoTrieNode checks that, at every context size,
// a Set of a var the context holds allocates only what a Set in a context of
// that var alone does (its token, and for a type with pointers its binding),
// and that a Reset restoring a value allocates nothing: the trie nodes the
// context made since it was last copied change in place. A Reset that
// removes a var allocates at most the one trie node that loses it.
func TestVar_setAndResetAllocateNoTrieNode(t *testing.T) {
	for _, n := range []int{1, 10, 100, 1000} {
		checkSetResetAllocs(t, n, 1, 2, 1.0)
		checkSetResetAllocs(t, n, "a", "b", 2.0)
	}
}

// checkSetResetAllocs measures, in a context of n vars, Sets and Resets of
// its last var, of type T, to the values a and b; wantSet is what a Set
// allocates.
func checkSetResetAllocs[T any](t *testing.T, n int, a, b T, wantSet float64) {
	t.Helper()
	v, w := contextvars.NewVar[T]("v"), contextvars.NewVar[T]("w")
	require.NoError(t, contextvars.New().Run(func() error {
		for i := range n - 1 {
			contextvars.NewVar[int]("x").Set(i)
		}
		v.Set(a)
		i := 0
		set := testing.AllocsPerRun(100, func() {
			if i++; i%2 == 0 {
				v.Set(a)
			} else {
				v.Set(b)
			}
		})
		assert.Equal(t, wantSet, set, "%d vars: allocations of %T Set", n, a)

		toks := make([]*contextvars.Token[T], 101)
		for k := range toks {
			toks[k] = v.Set(b)
		}
		k := len(toks)
		reset := testing.AllocsPerRun(100, func() {
			k--
			if err := toks[k].Reset(); err != nil {
				t.Fatal(err)
			}
		})
		assert.Zero(t, reset, "%d vars: allocations of a %T Reset restoring a value", n, a)
		got, _ := v.Get()
		assert.Equal(t, b, got, "%d vars: the first token's Reset restored b", n)

		scoped := testing.AllocsPerRun(100, func() {
			if err := v.Set(a).Reset(); err != nil {
				t.Fatal(err)
			}
		})
		assert.Equal(t, wantSet, scoped, "%d vars: allocations of a %T Set and Reset", n, a)

		// A Reset that removes a var: counted alone, around each Reset;
		// the fewest of 20, since the count is the process's.
		var before, after runtime.MemStats
		fewest := uint64(1 << 20)
		for range 20 {
			tok := w.Set(a)
			runtime.ReadMemStats(&before)
			err := tok.Reset()
			runtime.ReadMemStats(&after)
			require.NoError(t, err)
			fewest = min(fewest, after.Mallocs-before.Mallocs)
		}
		assert.LessOrEqual(t, fewest, uint64(1), "%d vars: allocations of a %T Reset removing a var", n, a)
		return nil
	}))
}
