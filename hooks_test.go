package contextvars_test

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-contextvars/contextvars"
)

// switchLog records switches as "from>to" by the contexts' names.
type switchLog struct {
	mu    sync.Mutex
	names map[*contextvars.Context]string
	log   []string
}

func (l *switchLog) name(c *contextvars.Context) string {
	if c == nil {
		return "nil"
	}
	return l.names[c]
}

func (l *switchLog) hook(from, to *contextvars.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.log = append(l.log, l.name(from)+">"+l.name(to))
}

func TestOnSwitch(t *testing.T) {
	a, b := contextvars.New(), contextvars.New()
	l := &switchLog{names: map[*contextvars.Context]string{a: "a", b: "b"}}
	v := contextvars.NewVar[int]("v")
	var seen []int
	remove := contextvars.OnSwitch(l.hook)
	removeSeen := contextvars.OnSwitch(func(_, to *contextvars.Context) {
		x, _ := v.In(to)
		seen = append(seen, x)
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		require.NoError(t, a.Run(func() error {
			v.Set(1)
			return b.Run(func() error { v.Set(2); return nil })
		}))
		// Panics and Goexit leave through the hooks too.
		func() {
			defer func() { _ = recover() }()
			_ = a.Run(func() error { panic("boom") })
		}()
	}()
	<-done
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		_ = b.Run(func() error { runtime.Goexit(); return nil })
	}()
	<-exited
	removeSeen()
	remove()
	remove() // again: nothing
	require.NoError(t, a.Run(func() error { return nil }))
	assert.Equal(t, []string{"nil>a", "a>b", "b>a", "a>nil", "nil>a", "a>nil", "nil>b", "b>nil"}, l.log)
	assert.Equal(t, []int{0, 0, 1, 0, 1, 0, 2, 0}, seen, "a hook sees the vars of the context switched to")
}

// TestOnSwitch_dropImplicit: dropping a goroutine's implicit context, with
// DropImplicit outside a Run or by the outermost Run that a DropImplicit
// inside it asked to, is a switch to no context, so that hooks such as
// pprofvars' do not keep the dropped context's labels.
func TestOnSwitch_dropImplicit(t *testing.T) {
	tag := contextvars.NewVar[string]("tag")
	name := func(c *contextvars.Context) string {
		if s, ok := tag.In(c); ok {
			return s
		}
		return "nil"
	}
	var mu sync.Mutex
	var log []string
	remove := contextvars.OnSwitch(func(from, to *contextvars.Context) {
		if name(from) == "nil" && name(to) == "nil" {
			return // another test's switch
		}
		mu.Lock()
		log = append(log, name(from)+">"+name(to))
		mu.Unlock()
	})
	defer remove()
	a := contextvars.New()
	a.Run(func() error { tag.Set("a"); return nil })

	tests := []struct {
		name string
		fn   func()
		want []string
	}{
		{"outside Run", func() {
			tag.Set("i")
			contextvars.DropImplicit()
		}, []string{"i>nil"}},
		{"inside Run", func() {
			tag.Set("i")
			a.Run(func() error { contextvars.DropImplicit(); return nil })
		}, []string{"i>a", "a>nil"}},
		{"inside Run, Set again after", func() {
			tag.Set("i")
			a.Run(func() error { contextvars.DropImplicit(); return nil })
			tag.Set("j")
			a.Run(func() error { return nil })
		}, []string{"i>a", "a>nil", "j>a", "a>j"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			log = nil
			mu.Unlock()
			done := make(chan struct{})
			go func() { defer close(done); tt.fn() }()
			<-done
			mu.Lock()
			defer mu.Unlock()
			assert.Equal(t, tt.want, log)
		})
	}
}

func TestOnSwitch_nil(t *testing.T) {
	assert.PanicsWithError(t, "contextvars: nil func", func() { contextvars.OnSwitch(nil) })
}

func TestGoIn(t *testing.T) {
	v := contextvars.NewVar[int]("v")
	c := contextvars.New()
	require.NoError(t, c.Run(func() error { v.Set(1); return nil }))
	done := make(chan int)
	require.NoError(t, contextvars.GoIn(c, func() {
		x, _ := v.Get()
		v.Set(x + 1)
		done <- x
	}))
	assert.Equal(t, 1, <-done, "the child runs in c itself")
	// c stays entered until fn returns: wait for the goroutine to leave.
	require.Eventually(t, func() bool { return c.Run(func() error { return nil }) == nil }, 10*time.Second, time.Millisecond)
	got, _ := v.In(c)
	assert.Equal(t, 2, got, "what the child set is seen in c afterwards")

	empty := make(chan bool)
	require.NoError(t, contextvars.GoIn(contextvars.New(), func() { _, ok := v.Get(); empty <- ok }))
	assert.False(t, <-empty, "a child in a new context sees nothing")

	release := make(chan struct{})
	require.NoError(t, contextvars.GoIn(c, func() { <-release }))
	err := contextvars.GoIn(c, func() { t.Error("started in an entered context") })
	assert.True(t, errors.Is(err, contextvars.ErrAlreadyEntered))
	close(release)

	assert.Error(t, contextvars.GoIn(nil, func() {}))
	assert.Error(t, contextvars.GoIn(contextvars.New(), nil))
}

func TestInheritance(t *testing.T) {
	plain := contextvars.NewVar[string]("plain")
	none := contextvars.NewVar[string]("none").InheritNone()
	depth := contextvars.NewVar[int]("depth").InheritWith(func(d int) int { return d + 1 })
	unset := contextvars.NewVar[int]("unset").InheritWith(func(d int) int { return d + 100 })
	type seen struct {
		plain, none string
		depth       int
		hasNone     bool
		hasUnset    bool
	}
	look := func() seen {
		var s seen
		s.plain, _ = plain.Get()
		s.none, s.hasNone = none.Get()
		s.depth, _ = depth.Get()
		_, s.hasUnset = unset.Get()
		return s
	}
	want := seen{plain: "p", depth: 1}
	for name, child := range map[string]func(f func()){
		"Go": func(f func()) {
			done := make(chan struct{})
			contextvars.Go(func() { defer close(done); f() })
			<-done
		},
		"Wrap": func(f func()) { contextvars.Wrap(f)() },
		"WrapErr": func(f func()) {
			_ = contextvars.WrapErr(func() error { f(); return nil })()
		},
		"Pull": func(f func()) {
			next, stop := contextvars.Pull(func(yield func(int) bool) { f(); yield(0) })
			defer stop()
			next()
		},
	} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, contextvars.New().Run(func() error {
				plain.Set("p")
				none.Set("n")
				depth.Set(0)
				var got seen
				child(func() { got = look() })
				assert.Equal(t, want, got)
				assert.Equal(t, seen{plain: "p", none: "n", hasNone: true}, look(), "the parent keeps its own")
				return nil
			}))
		})
	}
	// An explicit copy carries everything.
	require.NoError(t, contextvars.New().Run(func() error {
		none.Set("n")
		got, ok := none.In(contextvars.CopyContext())
		assert.True(t, ok)
		assert.Equal(t, "n", got)
		return nil
	}))
	// Back to the default.
	none.InheritValue()
	require.NoError(t, contextvars.New().Run(func() error {
		none.Set("n")
		var got string
		contextvars.Wrap(func() { got, _ = none.Get() })()
		assert.Equal(t, "n", got)
		return nil
	}))
	var nilVar *contextvars.Var[int]
	assert.PanicsWithError(t, "contextvars: nil *Var", func() { nilVar.InheritNone() })
	assert.PanicsWithError(t, "contextvars: nil func", func() { depth.InheritWith(nil) })
}

func TestRunWith(t *testing.T) {
	a := contextvars.NewVar[string]("a")
	b := contextvars.NewVarWithDefault("b", 0)
	require.NoError(t, contextvars.New().Run(func() error {
		a.Set("outer")
		err := contextvars.RunWith(func() error {
			x, _ := a.Get()
			y, _ := b.Get()
			assert.Equal(t, "inner", x)
			assert.Equal(t, 3, y, "the last binding of a var wins")
			b.Set(4) // contained
			return errors.New("fn's error")
		}, contextvars.Bind(a, "inner"), contextvars.Bind(b, 2), contextvars.Bind(b, 3), contextvars.Binding{})
		assert.EqualError(t, err, "fn's error")
		x, _ := a.Get()
		y, _ := b.Get()
		assert.Equal(t, "outer", x, "restored")
		assert.Equal(t, 0, y, "restored to the default")
		// Restored on panic too.
		func() {
			defer func() { assert.Equal(t, "boom", recover()) }()
			_ = contextvars.RunWith(func() error { panic("boom") }, contextvars.Bind(a, "p"))
		}()
		x, _ = a.Get()
		assert.Equal(t, "outer", x)
		return nil
	}))
	var nilVar *contextvars.Var[int]
	assert.Error(t, contextvars.RunWith(func() error { t.Error("called"); return nil }, contextvars.Bind(nilVar, 1)))
	assert.Error(t, contextvars.RunWith(nil, contextvars.Bind(a, "x")))
}

// BenchmarkRun_switchHook is an empty nested Run with no switch hook and
// with one that does nothing: what registering a hook costs every Run.
func BenchmarkRun_switchHook(b *testing.B) {
	for _, hooks := range []int{0, 1} {
		b.Run(fmt.Sprintf("hooks=%d", hooks), func(b *testing.B) {
			if hooks == 1 {
				defer contextvars.OnSwitch(func(_, _ *contextvars.Context) {})()
			}
			inner := contextvars.New()
			fn := func() error { return nil }
			b.ReportAllocs()
			_ = contextvars.New().Run(func() error {
				for b.Loop() {
					_ = inner.Run(fn)
				}
				return nil
			})
		})
	}
}
