package contextvars_test

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-contextvars/contextvars"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestVar_Set_allocationsByType checks what a Set allocates, for values of
// every kind of type, in a context of that var alone that is not copied
// between Sets: nothing where the caller drops the token, or keeps it only
// for a deferred Reset (the token stays on the caller's stack, and the
// binding changes in place); the token alone where the caller keeps it.
func TestVar_Set_allocationsByType(t *testing.T) {
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
		name               string
		drop, kept, scoped func() // a Set of a var of the type, in a context of that var
	}{
		{"int", dropper(1), keeper(1), scoper(1)},
		{"bool", dropper(true), keeper(true), scoper(true)},
		{"time.Duration", dropper(time.Second), keeper(time.Second), scoper(time.Second)},
		{"[0]*int", dropper([0]*int{}), keeper([0]*int{}), scoper([0]*int{})},
		{"[65]byte", dropper([65]byte{1}), keeper([65]byte{1}), scoper([65]byte{1})},
		{"flat struct", dropper(flat{A: 1}), keeper(flat{A: 1}), scoper(flat{A: 1})},
		{"string", dropper("s"), keeper("s"), scoper("s")},
		{"struct with string", dropper(withString{S: "s"}), keeper(withString{S: "s"}), scoper(withString{S: "s"})},
		{"[]byte", dropper([]byte{1}), keeper([]byte{1}), scoper([]byte{1})},
		{"*int", dropper(new(int)), keeper(new(int)), scoper(new(int))},
		{"any", dropper[any](1), keeper[any](1), scoper[any](1)},
		{"func", dropper(func() {}), keeper(func() {}), scoper(func() {})},
		{"map", dropper(map[int]int{}), keeper(map[int]int{}), scoper(map[int]int{})},
	}
	for _, tc := range cases {
		assert.Equal(t, contextvars.DroppedTokenAllocs, testing.AllocsPerRun(100, tc.drop), "allocations of a Set of %s, token dropped", tc.name)
		assert.Equal(t, 1.0, testing.AllocsPerRun(100, tc.kept), "allocations of a Set of %s, token kept", tc.name)
		assert.Equal(t, contextvars.DroppedTokenAllocs, testing.AllocsPerRun(100, tc.scoped), "allocations of a scoped Set of %s", tc.name)
	}
}

// sinkToken keeps tokens for keeper.
var sinkToken any

// dropper returns a func that sets a new var of val's type to val in a
// context of that var alone, dropping the token; keeper one that keeps it;
// scoper one that resets it on return, as defer v.Set(x).Reset() does.
func dropper[T any](val T) func() {
	v, c := contextvars.NewVar[T]("v"), contextvars.New()
	return func() { _ = c.Run(func() error { v.Set(val); return nil }) }
}

func keeper[T any](val T) func() {
	v, c := contextvars.NewVar[T]("v"), contextvars.New()
	return func() { _ = c.Run(func() error { sinkToken = v.Set(val); return nil }) }
}

func scoper[T any](val T) func() {
	v, c := contextvars.NewVar[T]("v"), contextvars.New()
	_ = c.Run(func() error { v.Set(val); return nil })
	return func() {
		_ = c.Run(func() error {
			defer v.Set(val).Reset()
			return nil
		})
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
// that var alone does (nothing: the binding changes in place), and one more
// object, the token, where the caller keeps the token; and that a
// Reset restoring a value allocates nothing: the trie nodes the context made
// since it was last copied change in place. A Reset that removes a var
// allocates at most the one trie node that loses it.
func TestVar_setAndResetAllocateNoTrieNode(t *testing.T) {
	for _, n := range []int{1, 10, 100, 1000} {
		checkSetResetAllocs(t, n, 1, 2, 0)
		checkSetResetAllocs(t, n, "a", "b", 0)
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
		assert.Equal(t, wantSet+contextvars.DroppedTokenAllocs, set, "%d vars: allocations of %T Set", n, a)
		kept := testing.AllocsPerRun(100, func() { sinkToken = v.Set(b) })
		assert.Equal(t, wantSet+1, kept, "%d vars: allocations of %T Set, token kept", n, a)

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
		assert.Equal(t, wantSet+contextvars.DroppedTokenAllocs, scoped, "%d vars: allocations of a %T Set and Reset", n, a)

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

// TestVar_Set_inPlaceReadersElsewhere: the owner of c sets a string var and
// an int var again and again, in place, and scopes a Set of each with a
// Reset, while goroutines that are not c's owner read them through every
// read that takes a context (Context.Get, Var.In, LookupContext and
// Var.InContext with a context.Context carrying c, a nested Run elsewhere)
// and format and read the owner's tokens. Under -race, a value stored in
// place while another goroutine reads it would be reported; each read must
// also see a value the owner set, whole, and never an older one.
func TestVar_Set_inPlaceReadersElsewhere(t *testing.T) {
	s := contextvars.NewVar[string]("s")
	n := contextvars.NewVar[int]("n")
	c := contextvars.New()
	ctx := contextvars.WithContext(context.Background(), c)
	const rounds = 3000
	tokens := make(chan *contextvars.Token[string], 16)
	var done atomic.Bool
	var wg sync.WaitGroup
	var bad atomic.Int64
	check := func(sv string, sok bool, nv int, nok bool, last *int) {
		if !sok || !nok {
			return // before the owner's first Sets
		}
		k, err := strconv.Atoi(strings.TrimPrefix(sv, "v"))
		if err != nil || (k != -1 && k < nv-1) || nv < *last {
			bad.Add(1)
		}
		*last = nv
	}
	for r := range 3 {
		wg.Go(func() {
			last := 0
			for i := 0; !done.Load(); i++ {
				switch (i + r) % 4 {
				case 0:
					nv, nok := c.Get(n)
					sv, sok := c.Get(s)
					x, _ := nv.(int)
					y, _ := sv.(string)
					check(y, sok, x, nok, &last)
				case 1:
					nv, nok := n.In(c)
					sv, sok := s.In(c)
					check(sv, sok, nv, nok, &last)
				case 2:
					nv, nok := n.InContext(ctx)
					sv, sok := contextvars.LookupContext(ctx, s)
					y, _ := sv.(string)
					check(y, sok, nv, nok, &last)
				case 3:
					_ = contextvars.New().Run(func() error {
						nv, nok := n.In(c)
						sv, sok := s.In(c)
						check(sv, sok, nv, nok, &last)
						return nil
					})
				}
				select {
				case tok := <-tokens:
					_ = tok.String()
					if old, ok := tok.OldValue(); ok && !strings.HasPrefix(old, "v") {
						bad.Add(1)
					}
				default:
				}
			}
		})
	}
	require.NoError(t, c.Run(func() error {
		for i := range rounds {
			// n first, then s: a reader that reads n, then s, sees s
			// at n-1 or later (or the scoped -1 below).
			n.Set(i)
			tok := s.Set("v" + strconv.Itoa(i))
			select {
			case tokens <- tok:
			default:
			}
			func() {
				defer s.Set("v-1").Reset()
				defer n.Set(i).Reset()
			}()
			if i%64 == 0 {
				runtime.Gosched()
			}
		}
		return nil
	}))
	done.Store(true)
	wg.Wait()
	assert.Zero(t, bad.Load(), "reads that saw a value the owner did not set, or an older one")
	got, _ := s.In(c)
	assert.Equal(t, "v"+strconv.Itoa(rounds-1), got)
}
