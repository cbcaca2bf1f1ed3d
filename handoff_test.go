package contextvars_test

import (
	"fmt"
	"iter"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/go-contextvars/contextvars"
)

// TestWrap hands the caller's vars to goroutines the package does not
// start, through the four APIs Wrap is shaped for: each call runs in a
// fresh copy of the snapshot taken by Wrap, so concurrent calls never
// collide and nothing leaks back.
func TestWrap(t *testing.T) {
	tenant := contextvars.NewVar[string]("tenant")
	hits := contextvars.NewVarWithDefault("hits", 0)
	const calls = 50

	// check runs as the wrapped func on some goroutine.
	check := func(t *testing.T) func() {
		return func() {
			got, _ := tenant.Get()
			assert.Equal(t, "acme", got, "the wrapped func sees the snapshot")
			h, _ := hits.Get()
			assert.Equal(t, 0, h, "no call sees another's Set")
			hits.Set(1)
			tenant.Set("other")
		}
	}
	submitters := []struct {
		name string
		run  func(t *testing.T, wrapped func())
	}{
		{"sync.WaitGroup.Go", func(t *testing.T, f func()) {
			var wg sync.WaitGroup
			for range calls {
				wg.Go(f)
			}
			wg.Wait()
		}},
		{"errgroup.Group.Go", func(t *testing.T, f func()) {
			var g errgroup.Group
			for range calls {
				g.Go(contextvars.WrapErr(func() error { f(); return nil }))
			}
			require.NoError(t, g.Wait())
		}},
		{"time.AfterFunc", func(t *testing.T, f func()) {
			var wg sync.WaitGroup
			wg.Add(calls)
			for range calls {
				time.AfterFunc(time.Millisecond, func() { defer wg.Done(); f() })
			}
			wg.Wait()
		}},
		{"worker pool", func(t *testing.T, f func()) {
			jobs := make(chan func())
			var workers sync.WaitGroup
			for range 4 { // workers started before any var was set
				workers.Go(func() {
					for job := range jobs {
						job()
					}
				})
			}
			for range calls {
				jobs <- f
			}
			close(jobs)
			workers.Wait()
		}},
	}
	for _, s := range submitters {
		t.Run(s.name, func(t *testing.T) {
			isolated(t, func() {
				tenant.Set("acme")
				wrapped := contextvars.Wrap(check(t))
				tenant.Set("changed after Wrap")
				s.run(t, wrapped)
				got, _ := tenant.Get()
				assert.Equal(t, "changed after Wrap", got, "nothing leaks back to the caller")
				h, _ := hits.Get()
				assert.Equal(t, 0, h)
			})
		})
	}
}

func TestWrap_nil(t *testing.T) {
	assert.PanicsWithError(t, "contextvars: nil func", func() { contextvars.Wrap(nil) })
	assert.PanicsWithError(t, "contextvars: nil func", func() { contextvars.WrapErr(nil) })
	assert.PanicsWithError(t, "contextvars: nil func", func() { contextvars.Pull[int](nil) })
	assert.PanicsWithError(t, "contextvars: nil func", func() { contextvars.Pull2[int, int](nil) })
}

// TestPull: a pulled sequence runs on a goroutine of its own; through Pull
// it sees the caller's vars, and its Sets stay in its copy.
func TestPull(t *testing.T) {
	prefix := contextvars.NewVar[string]("prefix")
	seq := func(yield func(string) bool) {
		for i := range 3 {
			p, _ := prefix.Get()
			if !yield(fmt.Sprint(p, i)) {
				return
			}
			prefix.Set("inner-")
		}
	}
	isolated(t, func() {
		prefix.Set("outer-")
		tok := prefix.Set("outer-")

		next, stop := contextvars.Pull(seq)
		defer stop()
		var got []string
		for s, ok := next(); ok; s, ok = next() {
			got = append(got, s)
		}
		assert.Equal(t, []string{"outer-0", "inner-1", "inner-2"}, got)
		p, _ := prefix.Get()
		assert.Equal(t, "outer-", p, "the sequence's Sets stay in its copy")
		assert.NoError(t, tok.Reset(), "the caller's token still works in the caller")

		// Without Pull, the sequence starts empty.
		rawNext, rawStop := iterPull(seq)
		defer rawStop()
		first, _ := rawNext()
		assert.Equal(t, "0", first, "iter.Pull alone: an empty context")
	})
}

func TestPull2(t *testing.T) {
	base := contextvars.NewVar[int]("base")
	isolated(t, func() {
		base.Set(10)
		next, stop := contextvars.Pull2(func(yield func(int, int) bool) {
			b, _ := base.Get()
			for i := range 3 {
				if !yield(i, b+i) {
					return
				}
			}
		})
		var got []int
		for _, v, ok := next(); ok; _, v, ok = next() {
			got = append(got, v)
		}
		stop()
		assert.True(t, slices.Equal([]int{10, 11, 12}, got), "Pull2 = %v", got)
	})
}

// iterPull is iter.Pull, named so the comparison reads plainly.
func iterPull(seq func(func(string) bool)) (func() (string, bool), func()) {
	return iter.Pull(iter.Seq[string](seq))
}
