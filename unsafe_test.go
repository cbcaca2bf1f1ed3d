package contextvars

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The package's three uses of unsafe, each checked here or beside its
// code: node.kids (TestHAMT_nodeLayout in hamt_test.go), bindingOf and
// rootOf.

// checkBindingOf checks that a leaf made for val, reached only through that
// leaf, gives val back through bindingOf after a collection, and that a
// value stored in place (next, made afresh and referred to by nothing else)
// is kept alive by the leaf and read back whole.
func checkBindingOf[T any](t *testing.T, val T, next func() T) {
	t.Helper()
	v := NewVar[T]("v")
	l := newLeaf(&v.c, val, 7)
	require.Same(t, &v.c, l.key)
	assert.Equal(t, uint64(7), leafTag(l))
	restored := newBinding(v, val)
	assert.Zero(t, leafTag(restored))
	runtime.GC()
	runtime.GC()
	_ = make([]byte, 1<<20) // reuse freed memory, if any was freed
	assert.Equal(t, val, leafValue[T](l), "a leaf keeps its binding alive")
	assert.Equal(t, val, leafValue[T](restored))
	assert.Nil(t, bindingOf[T](nil))
	storeLeafValue(l, next())
	runtime.GC()
	runtime.GC()
	_ = make([]byte, 1<<20)
	assert.Equal(t, next(), leafValue[T](l), "a value stored in place is kept alive, whole")
	assert.Equal(t, uint64(7), leafTag(l), "the store leaves the tag")
}

// TestUnsafe_bindingOf checks bindingOf on types of every shape.
func TestUnsafe_bindingOf(t *testing.T) {
	checkBindingOf(t, 42, func() int { return -1 })
	checkBindingOf(t, int8(-3), func() int8 { return 5 })
	checkBindingOf(t, [64]byte{1, 2, 3}, func() [64]byte { return [64]byte{4} })
	checkBindingOf(t, "a string", func() string { return fmt.Sprint("an", "other") })
	checkBindingOf(t, []int{1, 2, 3}, func() []int { return []int{4, 5} })
	checkBindingOf[any](t, &struct{ x int }{7}, func() any { return &struct{ x int }{8} })
	type mixed struct {
		a int
		p *[4]int
	}
	checkBindingOf(t, mixed{1, new([4]int)}, func() mixed { return mixed{2, &[4]int{3}} })
	checkBindingOf(t, map[string]int{"a": 1}, func() map[string]int { return map[string]int{"b": 2} })
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
