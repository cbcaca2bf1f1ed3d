package contextvars_test

import (
	"errors"
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
