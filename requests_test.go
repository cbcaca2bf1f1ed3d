package contextvars_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-contextvars/contextvars"
)

// TestMerge checks that Merge holds the vars of both contexts, over's
// winning, that neither input changes, and that the result is a context of
// its own, for every size relation between the two.
func TestMerge(t *testing.T) {
	vars := make([]*contextvars.Var[int], 40)
	for i := range vars {
		vars[i] = contextvars.NewVar[int](fmt.Sprint("v", i))
	}
	// filled returns a context where vars[from:to] are set to add+i.
	filled := func(from, to, add int) *contextvars.Context {
		c := contextvars.New()
		require.NoError(t, c.Run(func() error {
			for i := from; i < to; i++ {
				vars[i].Set(add + i)
			}
			return nil
		}))
		return c
	}
	// want is what a merge of base vars[bf:bt] and over vars[of:ot]
	// holds.
	want := func(bf, bt, of, ot int) map[string]int {
		m := map[string]int{}
		for i := bf; i < bt; i++ {
			m[vars[i].Name()] = 100 + i
		}
		for i := of; i < ot; i++ {
			m[vars[i].Name()] = 200 + i
		}
		return m
	}
	cases := []struct {
		name           string
		bf, bt, of, ot int
	}{
		{"both empty", 0, 0, 0, 0},
		{"base only", 0, 5, 0, 0},
		{"over only", 0, 0, 0, 5},
		{"disjoint, small", 0, 2, 2, 4},
		{"overlap, over smaller", 0, 30, 25, 32},
		{"overlap, over larger", 10, 14, 0, 40},
		{"same vars", 0, 20, 0, 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base, over := filled(tc.bf, tc.bt, 100), filled(tc.of, tc.ot, 200)
			m := contextvars.Merge(base, over)
			assert.Equal(t, want(tc.bf, tc.bt, tc.of, tc.ot), contents(m), "Merge(base, over)")
			assert.Equal(t, want(tc.bf, tc.bt, 0, 0), contents(base), "base is unchanged")
			assert.Equal(t, want(0, 0, tc.of, tc.ot), contents(over), "over is unchanged")

			// The result is a context of its own: a Set in it reaches
			// neither input, and it can be entered.
			require.NoError(t, m.Run(func() error { vars[0].Set(-1); return nil }))
			_, inBase := vars[0].In(base)
			assert.Equal(t, tc.bf == 0 && tc.bt > 0, inBase)
			assert.NotContains(t, contents(base), -1)
			assert.NotContains(t, contents(over), -1)
		})
	}

	// Nil counts as empty, and a copy merges as itself.
	base := filled(0, 3, 100)
	assert.Equal(t, contents(base), contents(contextvars.Merge(base, nil)), "Merge(base, nil)")
	assert.Equal(t, contents(base), contents(contextvars.Merge(nil, base)), "Merge(nil, over)")
	assert.Equal(t, 0, contextvars.Merge(nil, nil).Len(), "Merge(nil, nil)")
	assert.Equal(t, contents(base), contents(contextvars.Merge(base, base.Copy())), "Merge(base, base.Copy())")
	assert.NotSame(t, base, contextvars.Merge(base, nil), "Merge returns a new context")
}

// contents returns c's vars by name with their values.
func contents(c *contextvars.Context) map[string]int {
	m := map[string]int{}
	for k, v := range c.All() {
		m[k.Name()] = v.(int)
	}
	return m
}

// TestDropImplicit: a goroutine outside any Run forgets what it set there;
// inside a Run nothing is dropped; tokens of the dropped context are
// refused.
func TestDropImplicit(t *testing.T) {
	id := contextvars.NewVar[string]("id")
	done := make(chan struct{})
	go func() {
		defer close(done)
		assert.False(t, contextvars.DropImplicit(), "nothing to drop on a new goroutine")

		tok := id.Set("r-1")
		require.NoError(t, contextvars.New().Run(func() error { return nil }))
		got, ok := id.Get()
		assert.True(t, ok && got == "r-1", "the Run left the implicit context alone: %q", got)

		assert.True(t, contextvars.DropImplicit(), "DropImplicit outside any Run")

		_, ok = id.Get()
		assert.False(t, ok, "the next request on this goroutine sees nothing")
		assert.ErrorIs(t, tok.Reset(), contextvars.ErrTokenContext, "a token of the dropped context")
		_, ok = id.Get()
		assert.False(t, ok, "the refused Reset made no context")
		assert.False(t, contextvars.DropImplicit(), "dropped already")

		id.Set("r-2") // a new implicit context, as on a new goroutine
		got, _ = id.Get()
		assert.Equal(t, "r-2", got)
		assert.True(t, contextvars.DropImplicit())

		// Inside a Run (a middleware's RunWith between the one that set
		// the var and httpvars), the drop waits for the outermost Run.
		id.Set("r-3")
		require.NoError(t, contextvars.New().Run(func() error {
			assert.False(t, contextvars.DropImplicit(), "inside a Run: nothing dropped yet")
			return nil
		}))
		_, ok = id.Get()
		assert.False(t, ok, "dropped when the outermost Run returned")
	}()
	<-done
}

// ExampleMerge builds a request's context as httpvars does: the values set
// at start-up, with what the serving goroutine set for the request over
// them.
func ExampleMerge() {
	service := contextvars.NewVar[string]("service")
	requestID := contextvars.NewVar[string]("request_id")

	base := contextvars.New()
	_ = base.Run(func() error { service.Set("orders"); requestID.Set("-"); return nil })
	arrival := contextvars.New()
	_ = arrival.Run(func() error { requestID.Set("r-42"); return nil })

	req := contextvars.Merge(base, arrival)
	s, _ := service.In(req)
	id, _ := requestID.In(req)
	fmt.Println(s, id)
	// Output: orders r-42
}
