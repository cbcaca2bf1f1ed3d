package contextvars

import (
	"context"
	"fmt"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// goroutineLabelsShown reports whether the goroutine profile shows a
// goroutine labelled request=id.
func goroutineLabelsShown(t *testing.T, id string) bool {
	var b strings.Builder
	require.NoError(t, pprof.Lookup("goroutine").WriteTo(&b, 1))
	return strings.Contains(b.String(), `"request":"`+id+`"`)
}

// labelRuns counts runs of TestRun_pprofLabels.
var labelRuns int

// TestRun_pprofLabels checks that the package neither changes the labels
// set with runtime/pprof nor depends on them, and that theirs do not change
// ours.
func TestRun_pprofLabels(t *testing.T) {
	v := NewVar[string]("v")
	// Label values unique to this run: the goroutine profile is global.
	labelRuns++
	id, id2 := fmt.Sprint("run-", labelRuns), fmt.Sprint("run-", labelRuns, "-b")
	done := make(chan struct{})
	go func() {
		defer close(done)
		v.Set("before labels")
		pprof.Do(context.Background(), pprof.Labels("request", id), func(ctx context.Context) {
			assert.Equal(t, "before labels", v.GetOr(""), "pprof.Do does not change our context")
			v.Set("x")
			require.NoError(t, New().Run(func() error {
				v.Set("y")
				CopyContext()
				assert.True(t, goroutineLabelsShown(t, id), "labels inside Run")
				return nil
			}))
			child := make(chan struct{})
			Go(func() { close(child) })
			<-child
			assert.Equal(t, "x", v.GetOr(""))
			got, _ := pprof.Label(ctx, "request")
			assert.Equal(t, id, got)
			assert.True(t, goroutineLabelsShown(t, id), "labels after Set, Run, CopyContext, Go")
		})
		// The child started by Go inherited the labels and may not have
		// exited yet; wait for it to go.
		assert.Eventually(t, func() bool { return !goroutineLabelsShown(t, id) }, 10*time.Second, time.Millisecond,
			"pprof.Do restored the labels")
		assert.Equal(t, "x", v.GetOr(""), "restoring the labels does not change our context")
		pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("request", id2)))
		assert.Equal(t, "x", v.GetOr(""), "SetGoroutineLabels does not change our context")
		v.Set("z")
		assert.True(t, goroutineLabelsShown(t, id2))
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
	a, b := NewVar[[]byte]("a"), NewVar[[]byte]("b")
	before := heapInUse()
	c := New()
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
	growth := int64(heapInUse()) - int64(before)
	t.Logf("%d generations: heap growth %d KiB (all values: %d KiB)", generations, growth>>10, generations*size>>10)
	assert.Equal(t, 2, c.Len())
	assert.Less(t, growth, int64(generations*size/20), "earlier generations are not retained")
	runtime.KeepAlive(c)
}

// TestVar_Set_dropsOldValue checks that once v is set again and the token
// is dropped, the old value is garbage, as in Python: the trie holds only
// the current value, even though tokens of pointer-free types share an
// allocation with their binding.
func TestVar_Set_dropsOldValue(t *testing.T) {
	const size = 64 << 20
	buf := NewVar[[]byte]("buf")
	n := NewVar[[4]int]("n")
	c := New()
	before := heapInUse()
	require.NoError(t, c.Run(func() error {
		buf.Set(make([]byte, size))
		buf.Set(nil) // the token, which holds the old slice, is dropped
		n.Set([4]int{1})
		n.Set([4]int{2})
		return nil
	}))
	growth := int64(heapInUse()) - int64(before)
	t.Logf("heap growth after replacing a %d MiB value: %d KiB", size>>20, growth>>10)
	assert.Less(t, growth, int64(1<<20), "the old value is not kept alive")
	got, _ := n.In(c)
	assert.Equal(t, [4]int{2}, got)
	runtime.KeepAlive(c)
}

// TestTokenIsBinding checks the classification that decides whether a
// token is the binding the trie keeps (one allocation per Set) or a second
// allocation beside it, and that Set allocates accordingly.
func TestTokenIsBinding(t *testing.T) {
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
		name string
		set  func() // a Set of a var of the type, in a context of that var
		info *varInfo
		want bool
	}{
		{"int", setter(1), NewVar[int]("").c.info.Load(), true},
		{"flat struct", setter(flat{A: 1}), NewVar[flat]("").c.info.Load(), true},
		{"[0]*int", setter([0]*int{}), NewVar[[0]*int]("").c.info.Load(), true},
		{"[64]byte", setter([64]byte{1}), NewVar[[64]byte]("").c.info.Load(), true},
		{"[65]byte: too large", setter([65]byte{1}), NewVar[[65]byte]("").c.info.Load(), false},
		{"string", setter("s"), NewVar[string]("").c.info.Load(), false},
		{"struct with string", setter(withString{S: "s"}), NewVar[withString]("").c.info.Load(), false},
		{"[]byte", setter([]byte{1}), NewVar[[]byte]("").c.info.Load(), false},
		{"*int", setter(new(int)), NewVar[*int]("").c.info.Load(), false},
		{"any", setter[any](1), NewVar[any]("").c.info.Load(), false},
		{"func", setter(func() {}), NewVar[func()]("").c.info.Load(), false},
		{"map", setter(map[int]int{}), NewVar[map[int]int]("").c.info.Load(), false},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, tc.info.tokenIsBinding, "tokenIsBinding for %s", tc.name)
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
	v := NewVar[T]("v")
	c := New()
	return func() {
		_ = c.Run(func() error { v.Set(val); return nil })
	}
}

// TestVar_Set_loopDoesNotChain sets vars 20,000 times in a context without
// resetting, with values of pointer-free types, whose tokens hold the old
// value; v's tokens are the bindings the trie keeps (see Var.Set). The
// context must keep a few values alive, not a chain of all of them.
func TestVar_Set_loopDoesNotChain(t *testing.T) {
	const n = 20_000
	v := NewVar[[maxSharedSize]byte]("v")
	w := NewVar[[1024]byte]("w")
	c := New()
	before := heapInUse()
	require.NoError(t, c.Run(func() error {
		for i := range n {
			v.Set([maxSharedSize]byte{byte(i)})
			if i%3 == 0 {
				w.Set([1024]byte{byte(i)}) // a context of two vars, too
			}
		}
		return nil
	}))
	growth := int64(heapInUse()) - int64(before)
	t.Logf("%d Sets: heap growth %d KiB", n, growth>>10)
	assert.Less(t, growth, int64(64<<10), "the context keeps a few values, not every one set")
	got, _ := v.In(c)
	assert.Equal(t, byte((n-1)%256), got[0])
	runtime.KeepAlive(c)
}
