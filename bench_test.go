package contextvars

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/benbjohnson/immutable"
)

// Benchmarks of the public operations, by context size, and of the trie
// against github.com/benbjohnson/immutable. bench/compare runs them beside
// CPython's timeit of the same operations.

var sizes = []int{1, 10, 100, 1000}

// sinks keep results alive so the compiler cannot drop the work.
var (
	sinkInt int
	sinkAny any
	sinkCtx *Context
	sinkTok *Token[int]
)

// inContext runs body inside a new context that holds n vars, the last of
// which is v (set to 1), on the calling goroutine: benchmarks measure a
// goroutine that is inside Run, as a request handler is.
func inContext(b *testing.B, n int, body func(c *Context, v *Var[int])) {
	b.Helper()
	c, v := contextOf(n)
	if err := c.Run(func() error { body(c, v); return nil }); err != nil {
		b.Fatal(err)
	}
}

// contextOf returns a context holding n vars, the last of which is v = 1.
func contextOf(n int) (*Context, *Var[int]) {
	c := New()
	v := NewVar[int]("v")
	_ = c.Run(func() error {
		for i := range n - 1 {
			NewVar[int](fmt.Sprint("x", i)).Set(i)
		}
		v.Set(1)
		return nil
	})
	return c, v
}

// bySize runs body as sub-benchmarks vars=1, vars=10, ...
func bySize(b *testing.B, body func(b *testing.B, n int)) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("vars=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			body(b, n)
		})
	}
}

func BenchmarkVarGet(b *testing.B) {
	bySize(b, func(b *testing.B, n int) {
		inContext(b, n, func(_ *Context, v *Var[int]) {
			s := 0
			for b.Loop() {
				x, _ := v.Get()
				s += x
			}
			sinkInt = s
		})
	})
}

func BenchmarkVarGetOr(b *testing.B) {
	bySize(b, func(b *testing.B, n int) {
		inContext(b, n, func(_ *Context, v *Var[int]) {
			s := 0
			for b.Loop() {
				s += v.GetOr(5)
			}
			sinkInt = s
		})
	})
}

// BenchmarkVarGetDefault reads a var that is not set in the context.
func BenchmarkVarGetDefault(b *testing.B) {
	bySize(b, func(b *testing.B, n int) {
		d := NewVarWithDefault("d", 7)
		inContext(b, n, func(*Context, *Var[int]) {
			s := 0
			for b.Loop() {
				x, _ := d.Get()
				s += x
			}
			sinkInt = s
		})
	})
}

// BenchmarkVarSet overwrites a var already set, with a value that changes
// each time, as bench/compare's CPython statement does.
func BenchmarkVarSet(b *testing.B) {
	bySize(b, func(b *testing.B, n int) {
		inContext(b, n, func(_ *Context, v *Var[int]) {
			i := 1
			for b.Loop() {
				i++
				sinkTok = v.Set(i)
			}
		})
	})
}

// BenchmarkSetAllocation is the allocation Var.Set of an int makes, alone:
// the floor under BenchmarkVarSet/vars=1 on the machine at hand.
func BenchmarkSetAllocation(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sinkTok = new(Token[int])
	}
}

// BenchmarkContextAllocation is a bare allocation of a Context: the floor
// under BenchmarkCopyContext and BenchmarkContextCopy on the machine at hand.
func BenchmarkContextAllocation(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sinkCtx = new(Context)
	}
}

// BenchmarkCopyFloor is the allocation Copy makes, alone, at each context
// size: a Context holding the root of a context of n vars, with that
// context live. It is the floor under BenchmarkContextCopy and
// BenchmarkCopyContext at that size, measured as they are: an allocation
// costs more where the live heap holds a larger trie (the collector marks
// it every cycle), which BenchmarkContextAllocation, with nothing live,
// does not show.
func BenchmarkCopyFloor(b *testing.B) {
	bySize(b, func(b *testing.B, n int) {
		c, _ := contextOf(n)
		root := c.snapshot()
		for b.Loop() {
			sinkCtx = &Context{root: rootOf(root)}
		}
	})
}

// BenchmarkVarSetString sets a var of a type that holds pointers: its token
// and binding are two allocations, so that the trie never keeps the old
// value alive (see Var.Set).
func BenchmarkVarSetString(b *testing.B) {
	bySize(b, func(b *testing.B, n int) {
		c, s := New(), NewVar[string]("s")
		_ = c.Run(func() error {
			for i := range n - 1 {
				NewVar[int](fmt.Sprint("x", i)).Set(i)
			}
			s.Set("a")
			for b.Loop() {
				sinkAny = s.Set("b")
			}
			return nil
		})
	})
}

func BenchmarkVarSetReset(b *testing.B) {
	bySize(b, func(b *testing.B, n int) {
		inContext(b, n, func(_ *Context, v *Var[int]) {
			for b.Loop() {
				if err := v.Reset(v.Set(2)); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

func BenchmarkCopyContext(b *testing.B) {
	bySize(b, func(b *testing.B, n int) {
		inContext(b, n, func(*Context, *Var[int]) {
			for b.Loop() {
				sinkCtx = CopyContext()
			}
		})
	})
}

func BenchmarkContextCopy(b *testing.B) {
	bySize(b, func(b *testing.B, n int) {
		c, _ := contextOf(n)
		for b.Loop() {
			sinkCtx = c.Copy()
		}
	})
}

func BenchmarkContextRun(b *testing.B) {
	empty := func() error { return nil }
	bySize(b, func(b *testing.B, n int) {
		c, _ := contextOf(n)
		for b.Loop() {
			if err := c.Run(empty); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkContextRunNested is Run from inside another Run, as a handler
// that runs a callback in a copy does.
func BenchmarkContextRunNested(b *testing.B) {
	empty := func() error { return nil }
	bySize(b, func(b *testing.B, n int) {
		inContext(b, n, func(c *Context, _ *Var[int]) {
			d := c.Copy()
			for b.Loop() {
				if err := d.Run(empty); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

func BenchmarkContextGet(b *testing.B) {
	bySize(b, func(b *testing.B, n int) {
		c, v := contextOf(n)
		for b.Loop() {
			sinkAny, _ = c.Get(v)
		}
	})
}

func BenchmarkContextLen(b *testing.B) {
	bySize(b, func(b *testing.B, n int) {
		c, _ := contextOf(n)
		s := 0
		for b.Loop() {
			s += c.Len()
		}
		sinkInt = s
	})
}

// BenchmarkContextAll is a full loop over All: ns/op is per loop, not per
// var.
func BenchmarkContextAll(b *testing.B) {
	bySize(b, func(b *testing.B, n int) {
		c, _ := contextOf(n)
		for b.Loop() {
			for k, v := range c.All() {
				sinkAny, sinkAny = k, v
			}
		}
	})
}

// BenchmarkVarGetParallel runs Get on every P, each goroutine inside a
// context of its own: they must not slow each other.
func BenchmarkVarGetParallel(b *testing.B) {
	bySize(b, func(b *testing.B, n int) {
		b.RunParallel(func(pb *testing.PB) {
			c, v := contextOf(n)
			_ = c.Run(func() error {
				s := 0
				for pb.Next() {
					x, _ := v.Get()
					s += x
				}
				if s == 42 {
					sinkInt = s
				}
				return nil
			})
		})
	})
}

// BenchmarkContextRunParallel runs Run on every P, each goroutine on a
// context of its own.
func BenchmarkContextRunParallel(b *testing.B) {
	empty := func() error { return nil }
	bySize(b, func(b *testing.B, n int) {
		b.RunParallel(func(pb *testing.PB) {
			c, _ := contextOf(n)
			for pb.Next() {
				if err := c.Run(empty); err != nil {
					panic(err)
				}
			}
		})
	})
}

// BenchmarkGoroutineRun is a new goroutine that does one Run with a Set
// and a Get inside (impl=contextvars), against a plain goroutine doing the
// same work on a local variable (impl=plain): the difference is what the
// package costs a goroutine that uses it, registering and dropping its
// state included. Run it with -cpu 1,2,8: it must not grow with the cores.
func BenchmarkGoroutineRun(b *testing.B) { benchGoroutineRun(b, 0) }

// BenchmarkGoroutineRunBounded is BenchmarkGoroutineRun with at most 64
// goroutines started and not yet waited for, as a server bounds its
// requests in flight. BenchmarkGoroutineRun lets b.N goroutines pile up,
// and every collection then scans all their stacks, so there the
// package's two small allocations per goroutine cost mostly the
// collector's time.
func BenchmarkGoroutineRunBounded(b *testing.B) { benchGoroutineRun(b, 64) }

// BenchmarkLineTransfer measures the machine, not the package: the time a
// write to a cache line takes to reach a goroutine spinning on another core,
// two goroutines passing a counter back and forth in one word (an op is one
// way). bench/compare prints it beside the goroutine targets: a new
// goroutine's first Run writes its registry bucket, which a goroutine on
// another core usually wrote last, so the goroutine's cost includes about
// one such transfer where the cores do not share a cache (or the bucket's
// fetch from memory). It is some 20-40 ns between cores that share one on
// bare metal, and several times that across chiplets and in some VMs.
func BenchmarkLineTransfer(b *testing.B) {
	if runtime.GOMAXPROCS(0) < 2 {
		b.Skip("needs two Ps")
	}
	var line struct {
		_ [64]byte
		n atomic.Int64
		_ [56]byte
	}
	rounds := int64(b.N+1) / 2 // two transfers each
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range rounds {
			for line.n.Load() != 2*i+1 {
			}
			line.n.Store(2*i + 2)
		}
	}()
	b.ResetTimer()
	for i := range rounds {
		line.n.Store(2*i + 1)
		for line.n.Load() != 2*i+2 {
		}
	}
	b.StopTimer()
	<-done
}

// benchGoroutineRun is BenchmarkGoroutineRun, waiting for the goroutines
// started every batch of them if batch > 0.
func benchGoroutineRun(b *testing.B, batch int) {
	v := NewVar[int]("v")
	var failed atomic.Bool
	// spawn starts one goroutine per iteration, each doing work(i); both
	// sides pay the same indirect call.
	spawn := func(b *testing.B, work func(i int)) {
		b.ReportAllocs()
		var wg sync.WaitGroup
		n := 0
		for b.Loop() {
			n++
			i := n
			wg.Go(func() { work(i) })
			if batch > 0 && n%batch == 0 {
				wg.Wait()
			}
		}
		wg.Wait()
	}
	b.Run("impl=plain", func(b *testing.B) {
		spawn(b, func(i int) {
			box := struct{ v int }{}
			box.v = i
			if box.v != i {
				failed.Store(true)
			}
		})
	})
	b.Run("impl=contextvars", func(b *testing.B) {
		spawn(b, func(i int) {
			_ = New().Run(func() error {
				v.Set(i)
				if got, _ := v.Get(); got != i {
					failed.Store(true)
				}
				return nil
			})
		})
	})
	if failed.Load() {
		b.Fatal("a goroutine did not read back its value")
	}
}

// BenchmarkContextValue is the comparator from the standard library: the
// value of the innermost of depth context.WithValue layers, the outermost
// key being looked up.
func BenchmarkContextValue(b *testing.B) {
	type key int
	for _, depth := range []int{1, 10} {
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			for i := range depth {
				ctx = context.WithValue(ctx, key(i), i)
			}
			for b.Loop() {
				sinkAny = ctx.Value(key(0))
			}
		})
	}
}

// Trie against immutable.Map, on the same keys: vars' cores with their real
// hashes, which immutable gets through a Hasher (its hashes are 32 bits: the
// low half of ours, the bits both tries use first). impl=immutable-int is
// immutable with int keys and its own int hasher, whose keys need no
// memory of their own, for get and set.

var hamtSizes = []int{10, 1000, 100000}

// trieOf returns a trie holding n keys and the keys.
func trieOf(n int) (*node, []*varCore) {
	keys := keyset(n, func(int) uint64 { return nextHash() })
	var root *node
	for i, k := range keys {
		root, _ = root.set(leafOf(k, i))
	}
	return root, keys
}

// coreHasher hashes vars' cores for immutable.Map.
type coreHasher struct{}

func (coreHasher) Hash(k *varCore) uint32   { return uint32(k.hash()) }
func (coreHasher) Equal(a, b *varCore) bool { return a == b }

// immutableOf returns an immutable.Map binding keys[i] to i.
func immutableOf(keys []*varCore) *immutable.Map[*varCore, int] {
	b := immutable.NewMapBuilder[*varCore, int](coreHasher{})
	for i, k := range keys {
		b.Set(k, i)
	}
	return b.Map()
}

// immutableIntOf returns an immutable.Map binding i to i for i < n.
func immutableIntOf(n int) *immutable.Map[int, int] {
	b := immutable.NewMapBuilder[int, int](nil)
	for i := range n {
		b.Set(i, i)
	}
	return b.Map()
}

// byImpl runs ours, immutable's and (if not nil) immutable-int's bodies as
// impl=ours/size=N, impl=immutable/size=N and impl=immutable-int/size=N.
// Each structure is built just before its benchmark, so that the garbage
// collector of one does not mark the other's; b.Loop starts the timer after.
func byImpl(b *testing.B,
	ours func(b *testing.B, root *node, keys []*varCore),
	theirs func(b *testing.B, m *immutable.Map[*varCore, int], keys []*varCore),
	theirsInt func(b *testing.B, m *immutable.Map[int, int], n int),
) {
	for _, n := range hamtSizes {
		b.Run(fmt.Sprintf("impl=ours/size=%d", n), func(b *testing.B) {
			root, keys := trieOf(n)
			b.ReportAllocs()
			ours(b, root, keys)
		})
		b.Run(fmt.Sprintf("impl=immutable/size=%d", n), func(b *testing.B) {
			keys := keyset(n, func(int) uint64 { return nextHash() })
			m := immutableOf(keys)
			b.ReportAllocs()
			theirs(b, m, keys)
		})
		if theirsInt == nil {
			continue
		}
		b.Run(fmt.Sprintf("impl=immutable-int/size=%d", n), func(b *testing.B) {
			m := immutableIntOf(n)
			b.ReportAllocs()
			theirsInt(b, m, n)
		})
	}
}

func BenchmarkHAMTGet(b *testing.B) {
	byImpl(b, func(b *testing.B, root *node, keys []*varCore) {
		i, s := 0, 0
		for b.Loop() {
			s += valueOf(root.get(keys[i]))
			if i++; i == len(keys) {
				i = 0
			}
		}
		sinkInt = s
	}, func(b *testing.B, m *immutable.Map[*varCore, int], keys []*varCore) {
		i, s := 0, 0
		for b.Loop() {
			v, _ := m.Get(keys[i])
			s += v
			if i++; i == len(keys) {
				i = 0
			}
		}
		sinkInt = s
	}, func(b *testing.B, m *immutable.Map[int, int], n int) {
		i, s := 0, 0
		for b.Loop() {
			v, _ := m.Get(i)
			s += v
			if i++; i == n {
				i = 0
			}
		}
		sinkInt = s
	})
}

// BenchmarkHAMTSet replaces the value of an existing key, as Var.Set of a
// var already set does; ours includes making the leaf, which is Var.Set's
// token.
func BenchmarkHAMTSet(b *testing.B) {
	byImpl(b, func(b *testing.B, root *node, keys []*varCore) {
		i := 0
		for b.Loop() {
			r, _ := root.set(leafOf(keys[i], i))
			sinkAny = r
			if i++; i == len(keys) {
				i = 0
			}
		}
	}, func(b *testing.B, m *immutable.Map[*varCore, int], keys []*varCore) {
		i := 0
		for b.Loop() {
			sinkAny = m.Set(keys[i], i+1)
			if i++; i == len(keys) {
				i = 0
			}
		}
	}, func(b *testing.B, m *immutable.Map[int, int], n int) {
		i := 0
		for b.Loop() {
			sinkAny = m.Set(i, i+1)
			if i++; i == n {
				i = 0
			}
		}
	})
}

func BenchmarkHAMTDelete(b *testing.B) {
	byImpl(b, func(b *testing.B, root *node, keys []*varCore) {
		i := 0
		for b.Loop() {
			r, _ := root.delete(keys[i])
			sinkAny = r
			if i++; i == len(keys) {
				i = 0
			}
		}
	}, func(b *testing.B, m *immutable.Map[*varCore, int], keys []*varCore) {
		i := 0
		for b.Loop() {
			sinkAny = m.Delete(keys[i])
			if i++; i == len(keys) {
				i = 0
			}
		}
	}, nil)
}

// BenchmarkHAMTIterate is a full walk: ns/op is per walk.
func BenchmarkHAMTIterate(b *testing.B) {
	byImpl(b, func(b *testing.B, root *node, _ []*varCore) {
		s := 0
		for b.Loop() {
			root.walk(func(l *node) bool { s += valueOf(l); return true })
		}
		sinkInt = s
	}, func(b *testing.B, m *immutable.Map[*varCore, int], _ []*varCore) {
		s := 0
		for b.Loop() {
			for it := m.Iterator(); !it.Done(); {
				_, v, _ := it.Next()
				s += v
			}
		}
		sinkInt = s
	}, nil)
}
