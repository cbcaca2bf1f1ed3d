package contextvars

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
)

// A word is 64-bit aligned on every platform, as 64-bit atomic instructions
// need on 32-bit ones: the build fails where it is not (GOARCH=386 go vet
// compiles this file).
var _ [unsafe.Alignof(word{}) - 8]struct{}

// TestWord checks word's operations, StoreRelease (word_amd64.s on amd64
// without -race) among them, and the alignment of the words the package
// keeps in its structs.
func TestWord(t *testing.T) {
	var w word
	w.Store(1)
	assert.Equal(t, uint64(1), w.Load())
	w.StoreRelease(1 << 63)
	assert.Equal(t, uint64(1<<63), w.Load())
	assert.False(t, w.CompareAndSwap(1, 2))
	assert.True(t, w.CompareAndSwap(1<<63, 2))
	w.Or(5)
	assert.Equal(t, uint64(7), w.Load())
	w.StoreRelease(0)
	assert.Zero(t, w.Load())

	assert.Zero(t, unsafe.Offsetof(Token[int]{}.state)%8, "Token.state")
	assert.Zero(t, unsafe.Offsetof(Context{}.state)%8, "Context.state")
	assert.Zero(t, unsafe.Offsetof(Context{}.edit)%8, "Context.edit")
}

// TestWord_leaveIsSequentiallyConsistent is the store-buffering litmus test
// across Run's return (word.go): goroutine A runs c and, once Run has
// returned, loads x; B stores x, then tries to run c. With sequentially
// consistent atomics, "A's Run succeeded and A missed B's store" and "B
// found c entered" cannot both happen: if A missed the store, A left c
// before it, so before B tried. A release-only store in leave let both
// happen, 20 to 90 times in 50,000 rounds here (found by review). A runs c
// nested (leave) and outermost (leaveBeforeFree, then the registry's
// free). Under the race detector, where StoreRelease is sync/atomic's
// store, a few rounds do.
func TestWord_leaveIsSequentiallyConsistent(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("needs two Ps: the rounds meet at a spinning barrier")
	}
	rounds := 50_000
	switch {
	case raceEnabled:
		rounds = 5_000
	case Long():
		rounds = 300_000
	}
	for _, nested := range []bool{true, false} {
		t.Run(fmt.Sprintf("nested=%v", nested), func(t *testing.T) {
			c := New()
			var x atomic.Uint64
			var arrived atomic.Int64
			aMissed, bRefused := make([]bool, rounds), make([]bool, rounds)
			nop := func() error { return nil }
			// meet spins until both sides have arrived at round i, then
			// for up to a thousand iterations more, a number that varies
			// by round and side, so that the two sides' operations meet
			// at every offset.
			var sink atomic.Int64
			meet := func(i, spin int) {
				arrived.Add(1)
				for arrived.Load() < int64(2*(i+1)) {
				}
				s := 0
				for j := range spin % 1024 {
					s += j
				}
				if s == -1 {
					sink.Add(1)
				}
			}
			inRun := func(fn func()) {
				if nested {
					_ = New().Run(func() error { fn(); return nil })
				} else {
					fn()
				}
			}
			var wg sync.WaitGroup
			wg.Go(func() { // A
				inRun(func() {
					for i := range rounds {
						meet(i, i*7919)
						err := c.Run(nop)
						aMissed[i] = err == nil && x.Load() != uint64(i+1)
					}
				})
			})
			wg.Go(func() { // B
				_ = New().Run(func() error {
					for i := range rounds {
						meet(i, i*104729/3)
						x.Store(uint64(i + 1))
						bRefused[i] = errors.Is(c.Run(nop), ErrAlreadyEntered)
					}
					return nil
				})
			})
			wg.Wait()
			both := 0
			for i := range rounds {
				if aMissed[i] && bRefused[i] {
					both++
				}
			}
			assert.Zero(t, both, "rounds where A left c, missed B's store, and B found c entered")
		})
	}
}
