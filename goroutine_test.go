package contextvars

import (
	"runtime"
	"sync"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCache_dropsReplacedValue: inside Run, Get fills the lookup cache
// and Set replaces the value; the replaced value must be garbage once its
// token is, while the goroutine stays inside Run.
func TestCache_dropsReplacedValue(t *testing.T) {
	const size = 64 << 20
	big := NewVar[[]byte]("big")
	other := NewVar[int]("other")
	require.NoError(t, New().Run(func() error {
		other.Set(1) // two vars: Get goes through the cache
		big.Set(make([]byte, size))
		before := heapInUse()
		got, _ := big.Get()
		require.Len(t, got, size)
		got = nil
		big.Set(nil)
		growth := int64(heapInUse()) - int64(before)
		t.Logf("heap change after replacing a %d MiB value read through the cache: %d KiB", size>>20, growth>>10)
		assert.Less(t, growth, int64(-size/2), "the replaced value is garbage")
		runtime.KeepAlive(got)
		return nil
	}))
}

// TestCache_doesNotOutliveRun checks that a goroutine's lookup cache
// does not keep a context's trie alive once the goroutine has left the
// Run, also when the goroutine holds an implicit context and so keeps its
// state.
func TestCache_doesNotOutliveRun(t *testing.T) {
	for _, implicit := range []bool{false, true} {
		const nvars, size = 64, 1 << 20
		before := heapInUse()
		ready, release := make(chan struct{}), make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			if implicit {
				NewVar[int]("implicit").Set(1)
			}
			vars := make([]*Var[[]byte], nvars)
			for i := range vars {
				vars[i] = NewVar[[]byte]("v")
			}
			_ = New().Run(func() error {
				for _, v := range vars {
					v.Set(make([]byte, size))
				}
				for _, v := range vars {
					if got, _ := v.Get(); len(got) != size { // fills the cache
						t.Error("Get after Set")
					}
				}
				return nil
			})
			close(ready)
			<-release
		}()
		<-ready
		growth := int64(heapInUse()) - int64(before)
		close(release)
		<-done
		t.Logf("implicit=%v: heap growth while the goroutine waits after Run: %d KiB (the context held %d KiB)", implicit, growth>>10, nvars*size>>10)
		assert.Less(t, growth, int64(nvars*size/8), "implicit=%v: the goroutine's state keeps no trie of a context it left", implicit)
	}
}

// TestDropImplicit_onlyOutsideRun: dropImplicit forgets the values a
// goroutine set outside any Run and frees its state; inside a Run it leaves
// the goroutine as it is until the outermost Run returns, and drops the
// implicit context then (a middleware inside a Run on a keep-alive
// connection's goroutine: httpvars).
func TestDropImplicit_onlyOutsideRun(t *testing.T) {
	v := NewVar[int]("v")
	done := make(chan struct{})
	go func() {
		defer close(done)
		assert.False(t, dropImplicit(), "no implicit context yet")
		v.Set(1)
		require.NoError(t, New().Run(func() error {
			got, _ := v.Get()
			assert.Zero(t, got, "a new context")
			return nil
		}))
		got, ok := v.Get()
		assert.True(t, ok)
		assert.Equal(t, 1, got, "a Run restores the implicit context")
		assert.True(t, dropImplicit())
		_, ok = v.Get()
		assert.False(t, ok, "the implicit context is gone")
		assert.Nil(t, state(), "the state is freed")

		v.Set(2)
		require.NoError(t, New().Run(func() error {
			require.NoError(t, New().Run(func() error {
				assert.False(t, dropImplicit(), "inside Run: nothing dropped yet")
				return nil
			}))
			assert.NotNil(t, state().implicit, "a nested Run does not drop it")
			return nil
		}))
		_, ok = v.Get()
		assert.False(t, ok, "dropped as the outermost Run returned")
		assert.Nil(t, state(), "the state is freed")

		v.Set(3)
		func() {
			defer func() { recover() }()
			_ = New().Run(func() error { dropImplicit(); panic("boom") })
		}()
		assert.Nil(t, state(), "dropped on the way out of a panic too")
		v.Set(4)
		require.NoError(t, New().Run(func() error { return nil }))
		got, _ = v.Get()
		assert.Equal(t, 4, got, "the next implicit context is not dropped")
		dropImplicit()
	}()
	<-done
}

// TestGstate_layout: a state is a 192-byte size class of its own, and the
// fields a goroutine's Run, Set and free touch come before the cache, in the
// state's first cache line (see gstate); a bucket with its slot is 256 bytes,
// and what a new goroutine's first Run touches of it before and right
// after its claim lies in its first 64 bytes, the slot's part from byte 32
// (see homeBucket.slot).
func TestGstate_layout(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the layout is laid out for 64-bit platforms")
	}
	var gs gstate
	assert.Equal(t, uintptr(192), unsafe.Sizeof(gs))
	assert.LessOrEqual(t, unsafe.Offsetof(gs.home)+unsafe.Sizeof(gs.home), uintptr(64))
	assert.Less(t, unsafe.Offsetof(gs.hookCtx), unsafe.Offsetof(gs.cache))
	var hb homeBucket
	assert.Equal(t, uintptr(256), unsafe.Sizeof(hb))
	assert.LessOrEqual(t, unsafe.Offsetof(hb.slot)+unsafe.Offsetof(gs.dropPending)+1, uintptr(96))
	for name, off := range map[string]uintptr{"owner": unsafe.Offsetof(gs.owner), "nextID": unsafe.Offsetof(gs.nextID),
		"idsLeft": unsafe.Offsetof(gs.idsLeft), "cached": unsafe.Offsetof(gs.cached), "hooked": unsafe.Offsetof(gs.hooked),
		"current": unsafe.Offsetof(gs.current)} {
		assert.LessOrEqual(t, unsafe.Offsetof(hb.slot)+off+8, uintptr(64), "the slot's %s is in the bucket's first 64 bytes", name)
		assert.GreaterOrEqual(t, unsafe.Offsetof(hb.slot)+off, uintptr(32), "the slot's %s is past the first 32", name)
	}
	assert.Less(t, unsafe.Offsetof(hb.top), uintptr(32), "top is in the bucket's first 32 bytes")
	assert.Zero(t, uintptr(unsafe.Pointer(&reg.buckets))%32, "the registry is on a 32-byte boundary")
}

// TestOnSwitch_implicitContextCannotBeEntered: a hook sees a goroutine's
// implicit context (from, on its first Run); no Run may enter it, on another
// goroutine or on its own, since it is current there outside any Run.
func TestOnSwitch_implicitContextCannotBeEntered(t *testing.T) {
	v := NewVar[int]("hooked")
	var impl *Context
	seen, ownerDone, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		v.Set(1) // the implicit context
		var once sync.Once
		remove := OnSwitch(func(from, to *Context) {
			once.Do(func() { impl = from }) // entering: from is the implicit context
		})
		_ = New().Run(func() error { return nil })
		remove()
		close(seen)
		<-ownerDone
		assert.ErrorIs(t, impl.Run(func() error { return nil }), ErrAlreadyEntered, "its own goroutine")
		dropImplicit()
	}()
	<-seen
	require.NotNil(t, impl)
	err := impl.Run(func() error { v.Set(2); return nil })
	close(ownerDone)
	<-done
	assert.ErrorIs(t, err, ErrAlreadyEntered, "another goroutine")
	assert.Equal(t, 1, impl.Len())
}

// TestContext_idTakenOnEntry checks that a context entered by Run or Call,
// or made implicit, has its id before its first Set, which then keeps it
// (the Set pays no atomic operation for it); that contexts entered for the
// first time get ids no other context has; and that a context entered by
// GoIn, which has none, takes one at its first Set.
func TestContext_idTakenOnEntry(t *testing.T) {
	v := NewVar[int]("v")
	seen := map[uint64]bool{}
	check := func(c *Context) {
		t.Helper()
		id := c.id()
		require.NotZero(t, id, "no id on entry")
		assert.False(t, seen[id], "id %d given twice", id)
		seen[id] = true
		tok := v.Set(1)
		assert.Equal(t, id, c.id(), "Set changed the id")
		assert.Equal(t, id, tok.state.Load()&ctxIDMask, "token of another id")
		require.NoError(t, tok.Reset())
	}
	for range 3 {
		c := New()
		require.NoError(t, c.Run(func() error { check(c); return nil }))
		c2 := New()
		_, err := Call(c2, func() (int, error) { check(c2); return 0, nil })
		require.NoError(t, err)
		// Entered again: the same id.
		id := c.id()
		require.NoError(t, c.Run(func() error { assert.Equal(t, id, c.id()); return nil }))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer DropImplicit()
		v.Set(0) // makes the implicit context
		check(state().implicit)
	}()
	<-done
	c := New()
	done = make(chan struct{})
	require.NoError(t, GoIn(c, func() {
		defer close(done)
		v.Set(1)
		assert.NotZero(t, c.id(), "no id after the first Set")
	}))
	<-done
}
