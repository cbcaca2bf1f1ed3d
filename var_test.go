package contextvars_test

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"regexp"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-contextvars/contextvars"
)

// test_context_var_new_1
func TestNewVar(t *testing.T) {
	c := contextvars.NewVar[int]("aaa")
	assert.Equal(t, "aaa", c.Name())
	_, ok := c.Default()
	assert.False(t, ok, "NewVar has no default")

	d := contextvars.NewVarWithDefault("aaa", 5)
	def, ok := d.Default()
	assert.True(t, ok)
	assert.Equal(t, 5, def)

	// Identity is the key: same name, different vars.
	isolated(t, func() {
		c.Set(1)
		_, ok := contextvars.NewVar[int]("aaa").Get()
		assert.False(t, ok, "a var with the same name is another key")
	})
}

// test_context_var_repr_1 and test_token_repr_1
func TestVar_String(t *testing.T) {
	isolated(t, func() {
		c := contextvars.NewVar[int]("a")
		assert.Contains(t, c.String(), "a")
		assert.Regexp(t, `^<ContextVar name="a" at 0x[0-9a-f]+>$`, c.String())

		d := contextvars.NewVarWithDefault("a", 123)
		assert.Contains(t, d.String(), "123")

		// A default that holds its own var prints "..." rather than
		// recursing.
		lst := []any{}
		e := contextvars.NewVarWithDefault[any]("a", &lst)
		lst = append(lst, e)
		assert.Contains(t, e.String(), "...")
		assert.Contains(t, fmt.Sprint(lst), "...")

		tok := e.Set(1)
		assert.Contains(t, tok.String(), e.String())
		assert.NotContains(t, tok.String(), " used ")
		require.NoError(t, e.Reset(tok))
		assert.Contains(t, tok.String(), " used ")

		tok2 := c.Set(1)
		assert.Regexp(t, `^<Token var=<ContextVar name="a" at 0x[0-9a-fA-F]+> at 0x[0-9a-fA-F]+>$`, tok2.String())
	})
	var nilVar *contextvars.Var[int]
	assert.Equal(t, "<ContextVar nil>", nilVar.String())
	assert.Equal(t, "", nilVar.Name())
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

// TestVar_Get is the table of Get, GetOr and In.
func TestVar_Get(t *testing.T) {
	cases := []struct {
		name      string
		v         *contextvars.Var[string]
		set       bool
		value     string
		wantGet   string
		wantGetOK bool
		wantGetOr string // GetOr("arg")
		wantIn    string
		wantInOK  bool
	}{
		{"no default, unset", contextvars.NewVar[string]("a"), false, "", "", false, "arg", "", false},
		{"no default, set", contextvars.NewVar[string]("a"), true, "x", "x", true, "x", "x", true},
		{"default, unset", contextvars.NewVarWithDefault("a", "def"), false, "", "def", true, "arg", "", false},
		{"default, set", contextvars.NewVarWithDefault("a", "def"), true, "x", "x", true, "x", "x", true},
		{"set to zero value", contextvars.NewVarWithDefault("a", "def"), true, "", "", true, "", "", true},
		{"zero Var, unset", &contextvars.Var[string]{}, false, "", "", false, "arg", "", false},
		{"zero Var, set", &contextvars.Var[string]{}, true, "x", "x", true, "x", "x", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := contextvars.New()
			require.NoError(t, c.Run(func() error {
				if tc.set {
					tc.v.Set(tc.value)
				}
				got, ok := tc.v.Get()
				assert.Equal(t, tc.wantGetOK, ok, "v.Get() ok")
				assert.Equal(t, tc.wantGet, got, "v.Get()")
				assert.Equal(t, tc.wantGetOr, tc.v.GetOr("arg"), `v.GetOr("arg")`)
				return nil
			}))
			got, ok := tc.v.In(c)
			assert.Equal(t, tc.wantInOK, ok, "v.In(c) ok")
			assert.Equal(t, tc.wantIn, got, "v.In(c)")
		})
	}
	v := contextvars.NewVar[int]("v")
	_, ok := v.In(nil)
	assert.False(t, ok, "v.In(nil)")
}

// TestVar_manyTypes checks vars of types that are not comparable or are
// pointer-shaped, side by side in one context.
func TestVar_manyTypes(t *testing.T) {
	isolated(t, func() {
		b := contextvars.NewVar[[]byte]("bytes")
		f := contextvars.NewVar[func() int]("func")
		m := contextvars.NewVar[map[string]int]("map")
		s := contextvars.NewVar[struct{ A, B int }]("struct")
		p := contextvars.NewVar[*int]("ptr")
		x := 5
		b.Set([]byte("hi"))
		f.Set(func() int { return 7 })
		m.Set(map[string]int{"k": 1})
		s.Set(struct{ A, B int }{1, 2})
		p.Set(&x)
		gb, _ := b.Get()
		gf, _ := f.Get()
		gm, _ := m.Get()
		gs, _ := s.Get()
		gp, _ := p.Get()
		assert.Equal(t, []byte("hi"), gb)
		assert.Equal(t, 7, gf())
		assert.Equal(t, map[string]int{"k": 1}, gm)
		assert.Equal(t, struct{ A, B int }{1, 2}, gs)
		assert.Same(t, &x, gp)
		assert.Equal(t, 5, contextvars.CopyContext().Len())
	})
}

// TestVar_Reset is the table of Reset's outcomes, in CPython's order of
// checks: used, then var, then context.
func TestVar_Reset(t *testing.T) {
	type setup struct {
		v    *contextvars.Var[int]
		tok  *contextvars.Token[int]
		runs func(fn func() error) error // where Reset is called
	}
	inSame := func(c *contextvars.Context) func(func() error) error { return c.Run }

	cases := []struct {
		name    string
		prepare func(t *testing.T) setup
		wantErr error
		wantMsg string
	}{
		{
			name: "valid",
			prepare: func(t *testing.T) setup {
				c, v := contextvars.New(), contextvars.NewVar[int]("v")
				tok, _ := contextvars.Call(c, func() (*contextvars.Token[int], error) { return v.Set(1), nil })
				return setup{v, tok, inSame(c)}
			},
		},
		{
			name: "nil token",
			prepare: func(t *testing.T) setup {
				c := contextvars.New()
				return setup{contextvars.NewVar[int]("v"), nil, inSame(c)}
			},
			wantErr: contextvars.ErrNilToken,
			wantMsg: `^contextvars: nil token`,
		},
		{
			name: "zero token",
			prepare: func(t *testing.T) setup {
				c := contextvars.New()
				return setup{contextvars.NewVar[int]("v"), &contextvars.Token[int]{}, inSame(c)}
			},
			wantErr: contextvars.ErrNilToken,
			wantMsg: `^contextvars: nil token`,
		},
		{
			name: "used",
			prepare: func(t *testing.T) setup {
				c, v := contextvars.New(), contextvars.NewVar[int]("v")
				var tok *contextvars.Token[int]
				require.NoError(t, c.Run(func() error { tok = v.Set(1); return v.Reset(tok) }))
				return setup{v, tok, inSame(c)}
			},
			wantErr: contextvars.ErrTokenUsed,
			wantMsg: `^contextvars: <Token used var=<ContextVar name="v" at 0x[0-9a-f]+> at 0x[0-9a-f]+> has already been used once$`,
		},
		{
			name: "other var",
			prepare: func(t *testing.T) setup {
				c, v := contextvars.New(), contextvars.NewVar[int]("v")
				tok, _ := contextvars.Call(c, func() (*contextvars.Token[int], error) { return v.Set(1), nil })
				return setup{contextvars.NewVar[int]("w"), tok, inSame(c)}
			},
			wantErr: contextvars.ErrTokenVar,
			wantMsg: `^contextvars: <Token var=<ContextVar name="v" at 0x[0-9a-f]+> at 0x[0-9a-f]+> was created by a different ContextVar$`,
		},
		{
			name: "other context",
			prepare: func(t *testing.T) setup {
				c, v := contextvars.New(), contextvars.NewVar[int]("v")
				tok, _ := contextvars.Call(c, func() (*contextvars.Token[int], error) { return v.Set(1), nil })
				return setup{v, tok, contextvars.New().Run}
			},
			wantErr: contextvars.ErrTokenContext,
			wantMsg: `^contextvars: <Token var=<ContextVar name="v" at 0x[0-9a-f]+> at 0x[0-9a-f]+> was created in a different Context$`,
		},
		{
			name: "other goroutine",
			prepare: func(t *testing.T) setup {
				v := contextvars.NewVar[int]("v")
				ch := make(chan *contextvars.Token[int])
				go func() { ch <- v.Set(1) }() // the goroutine's implicit context
				return setup{v, <-ch, contextvars.New().Run}
			},
			wantErr: contextvars.ErrTokenContext,
		},
		{
			name: "used beats other var and context",
			prepare: func(t *testing.T) setup {
				c, v := contextvars.New(), contextvars.NewVar[int]("v")
				var tok *contextvars.Token[int]
				require.NoError(t, c.Run(func() error { tok = v.Set(1); return tok.Reset() }))
				return setup{contextvars.NewVar[int]("w"), tok, contextvars.New().Run}
			},
			wantErr: contextvars.ErrTokenUsed,
		},
		{
			name: "other var beats other context",
			prepare: func(t *testing.T) setup {
				c, v := contextvars.New(), contextvars.NewVar[int]("v")
				tok, _ := contextvars.Call(c, func() (*contextvars.Token[int], error) { return v.Set(1), nil })
				return setup{contextvars.NewVar[int]("w"), tok, contextvars.New().Run}
			},
			wantErr: contextvars.ErrTokenVar,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.prepare(t)
			var err error
			require.NoError(t, s.runs(func() error { err = s.v.Reset(s.tok); return nil }))
			if tc.wantErr == nil {
				require.NoError(t, err, "v.Reset(tok)")
				return
			}
			require.ErrorIs(t, err, tc.wantErr, "v.Reset(tok)")
			if tc.wantMsg != "" {
				assert.Regexp(t, regexp.MustCompile(tc.wantMsg), err.Error())
			}
			assert.Regexp(t, "^contextvars: ", err.Error())
		})
	}
}

// TestVar_Reset_refusedKeepsToken checks that a refused Reset neither uses
// the token nor changes the context.
func TestVar_Reset_refusedKeepsToken(t *testing.T) {
	c, v := contextvars.New(), contextvars.NewVarWithDefault("v", 0)
	tok, err := contextvars.Call(c, func() (*contextvars.Token[int], error) { return v.Set(1), nil })
	require.NoError(t, err)
	other := contextvars.New()
	require.NoError(t, other.Run(func() error {
		v.Set(5)
		assert.ErrorIs(t, tok.Reset(), contextvars.ErrTokenContext)
		assert.Equal(t, 5, v.GetOr(-1), "the current context is unchanged")
		return nil
	}))
	got, _ := v.In(c)
	assert.Equal(t, 1, got, "the token's context is unchanged")
	require.NoError(t, c.Run(tok.Reset), "the token is still good")
	_, ok := v.In(c)
	assert.False(t, ok)
}

// TestVar_Reset_restores walks Set/Reset sequences, LIFO and not.
func TestVar_Reset_restores(t *testing.T) {
	isolated(t, func() {
		v := contextvars.NewVarWithDefault("v", "default")
		w := contextvars.NewVar[int]("w")
		t1 := v.Set("one")
		tw := w.Set(1)
		t2 := v.Set("two")
		t3 := v.Set("three")

		old, ok := t3.OldValue()
		assert.True(t, ok)
		assert.Equal(t, "two", old)

		require.NoError(t, v.Reset(t2)) // out of order: back to "one"
		assert.Equal(t, "one", v.GetOr(""))
		require.NoError(t, v.Reset(t3)) // its old value is "two"
		assert.Equal(t, "two", v.GetOr(""))
		require.NoError(t, w.Reset(tw))
		_, ok = w.Get()
		assert.False(t, ok)
		require.NoError(t, v.Reset(t1))
		got, _ := v.Get()
		assert.Equal(t, "default", got)
		assert.Equal(t, 0, contextvars.CopyContext().Len())
	})
}

// TestVar_nil checks every method on a nil *Var: errors where the signature
// has one, otherwise a panic whose message starts "contextvars: ".
func TestVar_nil(t *testing.T) {
	var v *contextvars.Var[int]
	panics := map[string]func(){
		"Get":   func() { v.Get() },
		"GetOr": func() { v.GetOr(1) },
		"Set":   func() { v.Set(1) },
	}
	for name, fn := range panics {
		t.Run(name, func(t *testing.T) {
			defer func() {
				r := recover()
				err, ok := r.(error)
				require.True(t, ok, "panics with an error, got %#v", r)
				assert.Regexp(t, "^contextvars: nil \\*Var", err.Error())
			}()
			fn()
		})
	}
	err := v.Reset(nil)
	require.Error(t, err)
	assert.Regexp(t, "^contextvars: ", err.Error())
	_, ok := v.Default()
	assert.False(t, ok)
	_, ok = v.In(contextvars.New())
	assert.False(t, ok)
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

// TestVar_Get_largeContexts reads and writes many vars across contexts that
// share and then diverge from one trie, checking every Get against a map:
// lookups in tries of many vars go through each goroutine's lookup cache,
// which must never answer for a stale trie.
func TestVar_Get_largeContexts(t *testing.T) {
	const nvars = 64
	vars := make([]*contextvars.Var[int], nvars)
	for i := range vars {
		vars[i] = contextvars.NewVarWithDefault(fmt.Sprint("v", i), -1)
	}
	base := contextvars.New()
	model := map[*contextvars.Context]map[int]int{base: {}}
	require.NoError(t, base.Run(func() error {
		for i, v := range vars {
			v.Set(i)
			model[base][i] = i
		}
		return nil
	}))
	ctxs := []*contextvars.Context{base, base.Copy(), base.Copy()}
	for _, c := range ctxs[1:] {
		model[c] = maps.Clone(model[base])
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for step := range 5000 {
		c := ctxs[rng.IntN(len(ctxs))]
		require.NoError(t, c.Run(func() error {
			for range 20 {
				i := rng.IntN(nvars)
				switch rng.IntN(4) {
				case 0:
					tok := vars[i].Set(step)
					if rng.IntN(2) == 0 {
						require.NoError(t, tok.Reset())
					} else {
						model[c][i] = step
					}
				default:
					want, ok := model[c][i]
					if !ok {
						want = -1
					}
					got, _ := vars[i].Get()
					if got != want {
						t.Fatalf("step %d: %s.Get() = %d; want %d", step, vars[i].Name(), got, want)
					}
				}
			}
			return nil
		}))
	}
}
