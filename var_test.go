package contextvars_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"regexp"
	"runtime"
	"slices"
	"testing"
	"time"

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

// TestVar_String_quotesNameAsPython: a var's name is quoted as Python's
// repr quotes a str (the want column is CPython 3.11's repr of the name),
// in Var.String, Token.String and the token errors alike.
func TestVar_String_quotesNameAsPython(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"a", `'a'`},
		{"", `''`},
		{"it's", `"it's"`},
		{"say \"hi\"", `'say "hi"'`},
		{"both ' and \"", `'both \' and "'`},
		{"back\\slash", `'back\\slash'`},
		{"tab\x09here", `'tab\there'`},
		{"new\x0aline", `'new\nline'`},
		{"cr\x0d", `'cr\r'`},
		{"nul\x00", `'nul\x00'`},
		{"del\x7f", `'del\x7f'`},
		{"nbsp\u00a0", `'nbsp\xa0'`},
		{"\u00e9-\u00fc", `'é-ü'`},
		{"\u65e5\u672c", `'日本'`},
		{"ideo\u3000space", `'ideo\u3000space'`},
		{"zwsp\u200b", `'zwsp\u200b'`},
		{"emoji\U0001f600", `'emoji😀'`},
		{"\U000e0001tag", `'\U000e0001tag'`},
		{"bad\xffbyte", `'bad\udcffbyte'`}, // invalid UTF-8: as Python's os.fsdecode(b"bad\xffbyte")
		{"\x85", `'\udc85'`},               // an invalid byte, not U+0085
		{"\u0085", `'\x85'`},
	} {
		v := contextvars.NewVar[int](tc.name)
		assert.Equal(t, "<ContextVar name="+tc.want+" at ", v.String()[:len("<ContextVar name="+tc.want+" at ")], "name %q", tc.name)
		isolated(t, func() {
			tok := v.Set(1)
			require.NoError(t, tok.Reset())
			err := tok.Reset()
			require.ErrorIs(t, err, contextvars.ErrTokenUsed)
			assert.Equal(t, "contextvars: <Token used var=<ContextVar name="+tc.want+">> has already been used once", err.Error())
		})
	}
}

// test_token_contextmanager_reentrant and
// test_token_contextmanager_with_explicit_reset_the_same_token (CPython
// 3.14): the error of a token used twice matches their regex.
func TestToken_Reset_usedMessageMatchesCPythonTests(t *testing.T) {
	isolated(t, func() {
		c := contextvars.NewVarWithDefault("c", 42)
		tok := c.Set(36)
		require.NoError(t, tok.Reset())
		err := tok.Reset()
		require.ErrorIs(t, err, contextvars.ErrTokenUsed)
		assert.Regexp(t, `<Token .+ has already been used once`, err.Error())
		v, _ := c.Get()
		assert.Equal(t, 42, v)
	})
}

// test_context_var_repr_1 and test_token_repr_1
func TestVar_String(t *testing.T) {
	isolated(t, func() {
		c := contextvars.NewVar[int]("a")
		assert.Contains(t, c.String(), "a")
		assert.Regexp(t, `^<ContextVar name='a' at 0x[0-9a-f]+>$`, c.String())

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
		assert.Regexp(t, `^<Token var=<ContextVar name='a' at 0x[0-9a-fA-F]+> at 0x[0-9a-fA-F]+>$`, tok2.String())
	})
	var nilVar *contextvars.Var[int]
	assert.Equal(t, "<ContextVar nil>", nilVar.String())
	assert.Equal(t, "", nilVar.Name())
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
			wantMsg: `^contextvars: nil token: Reset\(nil\) of <ContextVar name='v'>$`,
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
			wantMsg: `^contextvars: <Token used var=<ContextVar name='v'>> has already been used once$`,
		},
		{
			name: "other var",
			prepare: func(t *testing.T) setup {
				c, v := contextvars.New(), contextvars.NewVar[int]("v")
				tok, _ := contextvars.Call(c, func() (*contextvars.Token[int], error) { return v.Set(1), nil })
				return setup{contextvars.NewVar[int]("w"), tok, inSame(c)}
			},
			wantErr: contextvars.ErrTokenVar,
			wantMsg: `^contextvars: <Token var=<ContextVar name='v'>> was created by a different ContextVar \(Reset of <ContextVar name='w'>\)$`,
		},
		{
			name: "other var of the same name",
			prepare: func(t *testing.T) setup {
				c, v := contextvars.New(), contextvars.NewVar[int]("v")
				tok, _ := contextvars.Call(c, func() (*contextvars.Token[int], error) { return v.Set(1), nil })
				return setup{contextvars.NewVar[int]("v"), tok, inSame(c)}
			},
			wantErr: contextvars.ErrTokenVar,
			wantMsg: `^contextvars: <Token var=<ContextVar name='v'>> was created by a different ContextVar \(Reset of another ContextVar of that name\)$`,
		},
		{
			name: "other context",
			prepare: func(t *testing.T) setup {
				c, v := contextvars.New(), contextvars.NewVar[int]("v")
				tok, _ := contextvars.Call(c, func() (*contextvars.Token[int], error) { return v.Set(1), nil })
				return setup{v, tok, contextvars.New().Run}
			},
			wantErr: contextvars.ErrTokenContext,
			wantMsg: `^contextvars: <Token var=<ContextVar name='v'>> was created in a different Context$`,
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
			wantMsg: `^contextvars: <Token var=<ContextVar name='v'>> was created in a different Context$`,
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
			// Messages name the var and hold no address, so that logs
			// group and grep by them.
			assert.NotContains(t, err.Error(), "0x", "v.Reset(tok): no address in %q", err)
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

// TestVar_Set_dropsOldValue checks that once v is set again and the token
// is dropped, the old value is garbage, as in Python: the trie holds only
// the current value, even though tokens of pointer-free types share an
// allocation with their binding.
func TestVar_Set_dropsOldValue(t *testing.T) {
	const size = 64 << 20
	buf := contextvars.NewVar[[]byte]("buf")
	n := contextvars.NewVar[[4]int]("n")
	c := contextvars.New()
	before := contextvars.HeapInUse()
	require.NoError(t, c.Run(func() error {
		buf.Set(make([]byte, size))
		buf.Set(nil) // the token, which holds the old slice, is dropped
		n.Set([4]int{1})
		n.Set([4]int{2})
		return nil
	}))
	growth := int64(contextvars.HeapInUse()) - int64(before)
	t.Logf("heap growth after replacing a %d MiB value: %d KiB", size>>20, growth>>10)
	assert.Less(t, growth, int64(1<<20), "the old value is not kept alive")
	got, _ := n.In(c)
	assert.Equal(t, [4]int{2}, got)
	runtime.KeepAlive(c)
}

// TestVar_Set_loopDoesNotChain sets vars 20,000 times in a context without
// resetting, with values of pointer-free types too large to change in place,
// whose tokens hold the binding their Set replaced. The context must keep a
// few values alive, not a chain of all of them.
func TestVar_Set_loopDoesNotChain(t *testing.T) {
	const n = 20_000
	v := contextvars.NewVar[[64]byte]("v")
	w := contextvars.NewVar[[1024]byte]("w")
	c := contextvars.New()
	before := contextvars.HeapInUse()
	require.NoError(t, c.Run(func() error {
		for i := range n {
			v.Set([64]byte{byte(i)})
			if i%3 == 0 {
				w.Set([1024]byte{byte(i)}) // a context of two vars, too
			}
		}
		return nil
	}))
	// The fewest of three readings: a goroutine of an earlier test that
	// has not finished yet can hold a few hundred KiB at one of them.
	growth := int64(contextvars.HeapInUse()) - int64(before)
	for range 2 {
		time.Sleep(10 * time.Millisecond)
		growth = min(growth, int64(contextvars.HeapInUse())-int64(before))
	}
	t.Logf("%d Sets: heap growth %d KiB", n, growth>>10)
	assert.Less(t, growth, int64(64<<10), "the context keeps a few values, not every one set")
	got, _ := v.In(c)
	assert.Equal(t, byte((n-1)%256), got[0])
	runtime.KeepAlive(c)
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
