package contextvars

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The package's three uses of unsafe, each checked here or beside its
// code: node.kids (TestHAMT_nodeLayout in hamt_test.go), bindingOf and
// rootOf.

// checkBindingOf checks that the leaf Set would put into a trie for val,
// reached only through that leaf, gives val back through bindingOf after a
// collection, and is the token's own binding where tokenIsBinding says so.
func checkBindingOf[T any](t *testing.T, val T) {
	t.Helper()
	v := NewVar[T]("v")
	tok, l := newToken(v, val, v.info().tokenIsBinding)
	require.Same(t, &v.c, l.key)
	assert.Equal(t, v.info().tokenIsBinding, l == &tok.b.leaf, "the token is the binding")
	tok = nil
	restored := newBinding(v, val)
	runtime.GC()
	runtime.GC()
	_ = make([]byte, 1<<20) // reuse freed memory, if any was freed
	assert.Equal(t, val, bindingOf[T](l).val, "a leaf keeps its binding alive")
	assert.Equal(t, val, bindingOf[T](restored).val)
	assert.Nil(t, bindingOf[T](nil))
}

// TestUnsafe_bindingOf checks bindingOf on types whose tokens are their
// bindings and types whose tokens are not.
func TestUnsafe_bindingOf(t *testing.T) {
	checkBindingOf(t, 42)
	checkBindingOf(t, [maxSharedSize]byte{1, 2, 3})
	checkBindingOf(t, "a string")
	checkBindingOf(t, []int{1, 2, 3})
	checkBindingOf[any](t, &struct{ x int }{7})
	checkBindingOf(t, struct {
		a int
		p *int
	}{1, new(int)})
}

// TestUnsafe_rootOf hands contexts made with rootOf's plain store (Copy)
// to other goroutines through a channel while the original changes: under
// -race, a store that the channel did not order before the reads would be
// reported.
func TestUnsafe_rootOf(t *testing.T) {
	v := NewVar[int]("v")
	src := New()
	copies := make(chan *Context)
	done := make(chan int)
	go func() {
		sum := 0
		for c := range copies {
			got, _ := v.In(c)
			sum += got
		}
		done <- sum
	}()
	want := 0
	require.NoError(t, src.Run(func() error {
		for i := range 1000 {
			v.Set(i)
			want += i
			copies <- CopyContext()
		}
		return nil
	}))
	close(copies)
	assert.Equal(t, want, <-done)
}
