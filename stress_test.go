package contextvars_test

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-contextvars/contextvars"
)

// Stress tests, meant for -race: many goroutines copying, running, setting
// and reading at once. Each is bounded in goroutines and iterations, and
// fails rather than hangs if something deadlocks.

// waitOrFail waits for wg, failing the test after limit.
func waitOrFail(t *testing.T, wg *sync.WaitGroup, limit time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(limit):
		t.Fatalf("goroutines did not finish within %v: deadlock?", limit)
	}
}

// readUntil starts n goroutines in wg that each call read again and again
// until stop is closed.
func readUntil(wg *sync.WaitGroup, stop <-chan struct{}, n int, read func()) {
	for range n {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				read()
			}
		})
	}
}

// TestStress_workers runs goroutines that each copy, run, set, reset and
// read, in their own contexts and in copies of a shared one, while readers
// walk the shared context.
func TestStress_workers(t *testing.T) {
	workers, iters := 8, 2000
	if !contextvars.Long() {
		iters = 300
	}
	vars := make([]*contextvars.Var[int], 16)
	for i := range vars {
		vars[i] = contextvars.NewVarWithDefault(fmt.Sprint("v", i), -1)
	}
	shared := contextvars.New()
	require.NoError(t, shared.Run(func() error {
		for i, v := range vars {
			v.Set(i)
		}
		return nil
	}))

	var wg sync.WaitGroup
	stop := make(chan struct{})
	readUntil(&wg, stop, 2, func() { // readers of the shared context
		n := 0
		for k, val := range shared.All() {
			if i := val.(int); k.Name() != fmt.Sprint("v", i) {
				t.Errorf("shared context: %s = %d", k.Name(), i)
			}
			n++
		}
		if n != len(vars) {
			t.Errorf("shared context has %d vars; want %d", n, len(vars))
		}
	})
	var workersWG sync.WaitGroup
	for w := range workers {
		workersWG.Go(func() {
			for i := range iters {
				v := vars[(w+i)%len(vars)]
				// A copy of the shared context: changes stay in it.
				c := shared.Copy()
				err := c.Run(func() error {
					tok := v.Set(w*iters + i)
					if got, _ := v.Get(); got != w*iters+i {
						return fmt.Errorf("Get after Set = %d", got)
					}
					inner := contextvars.CopyContext()
					if err := inner.Run(func() error { v.Set(-5); return nil }); err != nil {
						return err
					}
					if got, _ := v.Get(); got != w*iters+i {
						return fmt.Errorf("inner Run leaked: %d", got)
					}
					return v.Reset(tok)
				})
				if err != nil {
					t.Error(err)
					return
				}
				if got, _ := v.In(c); got != (w+i)%len(vars) {
					t.Errorf("after Reset, copy has %d", got)
					return
				}
				// The goroutine's implicit context.
				v.Set(i)
				if got, _ := v.Get(); got != i {
					t.Errorf("implicit context: %d", got)
					return
				}
			}
		})
	}
	waitOrFail(t, &workersWG, 2*time.Minute)
	close(stop)
	waitOrFail(t, &wg, time.Minute)
	for i, v := range vars {
		got, _ := v.In(shared)
		assert.Equal(t, i, got, "the shared context never changed")
	}
}

// TestStress_raceToEnter lets goroutines race to enter one context, round
// after round: exactly one wins each round, every other gets
// ErrAlreadyEntered, and nobody deadlocks.
func TestStress_raceToEnter(t *testing.T) {
	const racers = 6
	rounds := 300
	if !contextvars.Long() {
		rounds = 50
	}
	c := contextvars.New()
	v := contextvars.NewVar[int]("winner")
	for round := range rounds {
		var wins, refused atomic.Int32
		start := make(chan struct{})
		var wg sync.WaitGroup
		for r := range racers {
			wg.Go(func() {
				<-start
				err := c.Run(func() error {
					wins.Add(1)
					v.Set(r)
					// Hold c until every other racer has been refused, so
					// that none can enter after this one leaves.
					deadline := time.Now().Add(30 * time.Second)
					for refused.Load() < racers-1 {
						if time.Now().After(deadline) {
							return errors.New("racers did not finish")
						}
						time.Sleep(10 * time.Microsecond)
					}
					return nil
				})
				switch {
				case err == nil:
				case errors.Is(err, contextvars.ErrAlreadyEntered):
					refused.Add(1)
				default:
					t.Error(err)
				}
			})
		}
		close(start)
		waitOrFail(t, &wg, time.Minute)
		require.Equal(t, int32(1), wins.Load(), "round %d: winners", round)
		require.Equal(t, int32(racers-1), refused.Load(), "round %d: refused", round)
	}
	assert.Equal(t, 1, c.Len())
	assert.NoError(t, c.Run(func() error { return nil }), "c is free after the races")
}

// TestStress_goAndSweep starts goroutines in waves that set vars in their
// implicit contexts and start children with Go, so that sweeps run while
// other goroutines look up and register their state.
func TestStress_goAndSweep(t *testing.T) {
	waves, perWave := 20, 300
	if !contextvars.Long() {
		waves = 5
	}
	v := contextvars.NewVar[int]("v")
	for w := range waves {
		var wg sync.WaitGroup
		for i := range perWave {
			wg.Go(func() {
				v.Set(i)
				var child sync.WaitGroup
				child.Add(1)
				contextvars.Go(func() {
					defer child.Done()
					if got, _ := v.Get(); got != i {
						t.Errorf("wave %d: child sees %d; want %d", w, got, i)
					}
					v.Set(-1)
				})
				child.Wait()
				if got, _ := v.Get(); got != i {
					t.Errorf("wave %d: parent sees %d; want %d", w, got, i)
				}
			})
		}
		waitOrFail(t, &wg, time.Minute)
	}
}

// TestStress_readersDuringInPlaceWrites runs one goroutine inside a context
// that sets and resets its vars in a loop, so that the trie's nodes change in
// place, while other goroutines read the context (In, Len, Get, All) and
// copy it. Every read must find a whole value of each var, the context's
// size must never move, and a copy must never change after it is taken.
func TestStress_readersDuringInPlaceWrites(t *testing.T) {
	for _, n := range []int{1, 10, 100} {
		t.Run(fmt.Sprintf("vars=%d", n), func(t *testing.T) {
			type pair [2]int // a whole value has pair[1] == -pair[0]
			vars := make([]*contextvars.Var[pair], n)
			names := make([]*contextvars.Var[string], 0, 1)
			c := contextvars.New()
			require.NoError(t, c.Run(func() error {
				for i := range vars {
					vars[i] = contextvars.NewVar[pair](fmt.Sprint("p", i))
					vars[i].Set(pair{})
				}
				if n > 1 { // a var of a type with pointers, and a Set and Reset
					names = append(names, contextvars.NewVar[string]("s"))
					vars[n-1].Reset(vars[n-1].Set(pair{}))
					names[0].Set("s0")
				}
				return nil
			}))
			size := c.Len()
			whole := func(key contextvars.Key, x any) bool {
				switch x := x.(type) {
				case pair:
					return x[1] == -x[0]
				case string:
					return len(x) >= 2 && x[0] == 's'
				}
				return false
			}
			var failures atomic.Int32
			fail := func(format string, args ...any) {
				if failures.Add(1) <= 5 {
					t.Errorf(format, args...)
				}
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			readUntil(&wg, stop, 1, func() {
				for i, v := range vars {
					if x, ok := v.In(c); !ok || x[1] != -x[0] {
						fail("%s.In(c) = %v, %v: not a whole value", vars[i].Name(), x, ok)
					}
				}
				if got := c.Len(); got != size {
					fail("c.Len() = %d; want %d", got, size)
				}
			})
			readUntil(&wg, stop, 1, func() {
				d := c.Copy()
				first := map[contextvars.Key]any{}
				for k, x := range d.All() {
					if !whole(k, x) {
						fail("copy: All yields %s = %v: not a whole value", k.Name(), x)
					}
					first[k] = x
				}
				runtime.Gosched() // let the writer write
				for k, x := range d.All() {
					if first[k] != x {
						fail("a copy changed: %s was %v, is %v", k.Name(), first[k], x)
					}
				}
				if len(first) != size || d.Len() != size {
					fail("copy of %d vars: All yields %d, Len %d", size, len(first), d.Len())
				}
			})
			wg.Go(func() {
				iterations := 3000
				if testing.Short() {
					iterations = 1000
				}
				require.NoError(t, c.Run(func() error {
					for i := range iterations {
						v := vars[i%n]
						tok := v.Set(pair{i, -i})
						if i%3 == 0 {
							if err := tok.Reset(); err != nil {
								return err
							}
						}
						if len(names) > 0 && i%5 == 0 {
							names[0].Reset(names[0].Set(fmt.Sprint("s", i)))
						}
					}
					return nil
				}))
				close(stop)
			})
			waitOrFail(t, &wg, time.Minute)
		})
	}
}

// TestStress_handoffKeepsEveryWrite passes one context among goroutines that
// race to Run it: each owner reads a counter var, sets it one higher and
// resets a token the last owner left, so that a write or a token's mark
// lost between owners (the release stores of leaveBeforeFree, as the
// racers' Runs are outermost, consume and release: word.go) shows as a
// count short or a token reset twice. Without -race it runs the
// plain-store path (word_amd64.s), which the race detector does not see.
func TestStress_handoffKeepsEveryWrite(t *testing.T) {
	const racers = 4
	rounds := 2000
	if contextvars.Long() {
		rounds = 20000
	}
	c := contextvars.New()
	count, last := contextvars.NewVar[int]("count"), contextvars.NewVar[int]("last")
	var (
		runs, resets atomic.Int64
		mu           sync.Mutex
		tok          *contextvars.Token[int] // the last owner's Set of last
	)
	var wg sync.WaitGroup
	for r := range racers {
		wg.Go(func() {
			for i := 0; i < rounds; {
				err := c.Run(func() error {
					n, _ := count.Get()
					count.Set(n + 1)
					mu.Lock()
					prev := tok
					tok = nil
					mu.Unlock()
					if prev != nil {
						if err := prev.Reset(); err != nil {
							return err
						}
						resets.Add(1)
					}
					t := last.Set(r)
					mu.Lock()
					tok = t
					mu.Unlock()
					return nil
				})
				switch {
				case err == nil:
					runs.Add(1)
					i++
				case errors.Is(err, contextvars.ErrAlreadyEntered):
					runtime.Gosched()
				default:
					t.Error(err)
					return
				}
			}
		})
	}
	waitOrFail(t, &wg, 2*time.Minute)
	n, _ := count.In(c)
	assert.Equal(t, int(runs.Load()), n, "count after every Run")
	assert.Equal(t, runs.Load()-1, resets.Load(), "resets")
	assert.Equal(t, 2, c.Len())
	// The last token, reset on another goroutine after the fact, undoes
	// its Set once: the var goes, and a second Reset is refused.
	require.NoError(t, c.Run(func() error { return tok.Reset() }))
	assert.False(t, c.Contains(last))
	assert.ErrorIs(t, c.Run(func() error { return tok.Reset() }), contextvars.ErrTokenUsed)
}
