package contextvars

// This file is the only one that knows about goroutines: which context is
// current on each, how Run swaps it, and how the state of goroutines that
// have exited is reclaimed.
//
// # Ownership
//
// The entered flag of a Context (a bit of Context.state) records that some
// goroutine is inside c.Run (or Call). Only the goroutine that enters c sets
// it, with a compare-and-swap from clear; any goroutine may load it. That
// goroutine's deferred exit clears it, and deferred calls run on return, on
// panic and on runtime.Goexit alike, so the flag cannot stay set after the
// goroutine has left Run. A second
// entrant, the same goroutine recursively or another one concurrently, fails
// the compare-and-swap, gets ErrAlreadyEntered, and its fn is not called. So
// at most one goroutine has c current at any time, and only it writes c.root;
// the release of the flag synchronizes before the next entrant's
// compare-and-swap, so the next owner sees every write of the last.
//
// # Goroutine state
//
// Each goroutine that has used the package has a gstate holding its current
// context: the one it is running inside, or its implicit context (made by
// its first Set outside any Run, as Python makes one per thread), or nil.
// A gstate is read and written only by its goroutine.
//
// The registry maps goroutine ids (goroutineid.go) to gstates: an
// open-addressed hash table whose slots are read with atomic loads, so a
// lookup takes no lock, allocates nothing and writes no shared memory. Only
// a goroutine's first use inserts into it, under reg.mu. Since a goroutine
// only ever looks up its own id, and its entry was inserted by itself, it
// always finds it; inserts of others and table rebuilds do not disturb it:
// a rebuild publishes a new table with every live entry and leaves the old
// one intact for lookups already under way.
//
// # Reclaiming the state of exited goroutines
//
// Go has no hook that runs when a goroutine exits, so entries are removed
// three ways:
//
//   - Go removes its goroutine's entry when fn returns, panics or exits.
//   - Run and Call remove the entry when they unwind abnormally (panic or
//     Goexit) out of the goroutine's outermost Run while it has no implicit
//     context: the gstate then holds nothing, and a goroutine that recovers
//     simply makes a new one when it next needs one.
//   - For everything else, a sweep: when an insert finds as many entries as
//     reg.sweepAt, it lists the live goroutines with runtime.Stack(buf, true)
//     (public API: it prints "goroutine N [...]" for every user goroutine)
//     and rebuilds the table with only the entries of live ones, then sets
//     sweepAt to twice the entries kept (at least minSweep). The sweep's cost,
//     one stop-the-world traceback, is spread over at least as many inserts
//     as entries survive, so memory stays proportional to the goroutines
//     alive at the last sweep.
//
// Why the sweep is safe: it holds reg.mu from before it lists goroutines
// until the new table is published, and inserts need reg.mu, so every entry
// it looks at was inserted, by its own goroutine, before the listing. That
// goroutine was alive then; if the listing lacks it, it has exited. The
// runtime never reuses goroutine ids, so a dead goroutine's id never names a
// new goroutine. A live user goroutine is always in the listing.
// One caveat: the runtime lists the goroutine that runs finalizers and
// cleanups only while it is running one, so an implicit context made by a
// finalizer may be dropped between two finalizers; inside Run nothing is.

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
)

// Run makes c the calling goroutine's current context for the duration of
// fn, and then restores the previous one: Python's Context.run. Every
// [Var.Set] and [Var.Reset] that fn makes, directly or in calls, changes c
// and is visible in c afterwards, but not outside it. Run returns fn's error.
//
// If c is already entered, by this goroutine or by another, Run does not
// call fn and returns an error e with errors.Is(e, [ErrAlreadyEntered]).
// Running a different context inside fn nests as expected.
//
// The previous context is restored also when fn panics, and the panic goes
// on unchanged: Run does not recover it and hand it back as an error, which
// would change the stack a crash prints and hide the panic from the
// caller's own recover. It is restored too when fn calls runtime.Goexit,
// since the goroutine's deferred calls, which may read vars, still run.
func (c *Context) Run(fn func() error) error {
	gs, prev, err := c.begin(fn == nil)
	if err != nil {
		return err
	}
	done := false
	defer func() { c.exit(gs, prev, done) }()
	err = fn()
	done = true
	return err
}

// Call is [Context.Run] for a function that returns a value: it runs fn with
// c as the calling goroutine's current context and returns fn's results.
// It is Python's ctx.run(callable) with a return value.
func Call[T any](c *Context, fn func() (T, error)) (T, error) {
	gs, prev, err := c.begin(fn == nil)
	if err != nil {
		var zero T
		return zero, err
	}
	done := false
	defer func() { c.exit(gs, prev, done) }()
	r, err := fn()
	done = true
	return r, err
}

// begin checks the arguments of Run and Call, then enters c.
func (c *Context) begin(nilFunc bool) (gs *gstate, prev *Context, err error) {
	if c == nil {
		return nil, nil, errNilContext
	}
	if nilFunc {
		return nil, nil, errNilFunc
	}
	return c.enter()
}

// enter makes c the calling goroutine's current context and returns the
// goroutine's state and the context it replaced; see "Ownership" above.
func (c *Context) enter() (gs *gstate, prev *Context, err error) {
	if !c.tryEnter() {
		return nil, nil, &cvError{ErrAlreadyEntered, "contextvars: cannot enter context: " + c.String() + " is already entered"}
	}
	gs = self()
	prev = gs.current
	gs.current = c
	return gs, prev, nil
}

// exit undoes enter. done reports whether fn returned normally.
func (c *Context) exit(gs *gstate, prev *Context, done bool) {
	gs.current = prev
	c.leave()
	if prev != nil {
		return
	}
	// Leaving the outermost Run of a goroutine with no implicit context:
	// the goroutine may be about to exit, and its state wait for a sweep,
	// which should not keep tries alive meanwhile.
	if gs.cached {
		gs.cache, gs.cached = [lookupCacheSize]cacheEntry{}, false
	}
	if !done {
		// Unwinding by panic or Goexit: gs holds nothing worth keeping.
		reg.forget(goroutineID())
	}
}

// runGoroutine is the body of a goroutine started by Go: fn inside c, after
// which the goroutine's state is dropped at once rather than left for a
// sweep.
func runGoroutine(c *Context, fn func()) {
	defer reg.forget(goroutineID())
	_ = c.Run(func() error { fn(); return nil }) // c is new: Run cannot fail
}

// current returns the calling goroutine's current context, or nil if it has
// none yet (it is outside any Run and has not set a var).
func current() *Context {
	if gs := reg.lookup(goroutineID()); gs != nil {
		return gs.current
	}
	return nil
}

// currentLeaf returns the leaf bound to k in the calling goroutine's current
// context, or nil. It is Var.Get's lookup: a context of one var is answered
// from its root; a larger one through the goroutine's lookup cache, then the
// trie.
func currentLeaf(k *varCore) *node {
	gs := reg.lookup(goroutineID())
	if gs == nil || gs.current == nil {
		return nil
	}
	root := gs.current.root.Load()
	if root == nil || root.key != nil {
		return root.get(k)
	}
	// The cache is keyed by (var, root). A root identifies one immutable
	// trie, and the entry holds it, so its address cannot be reused for
	// another trie while the entry stands: a hit is always right.
	e := &gs.cache[k.hash&(lookupCacheSize-1)]
	if e.key == k && e.root == root {
		return e.leaf
	}
	l := root.find(k)
	*e = cacheEntry{key: k, root: root, leaf: l}
	gs.cached = true
	return l
}

// self returns the calling goroutine's state, registering it on first use.
func self() *gstate {
	id := goroutineID()
	if gs := reg.lookup(id); gs != nil {
		return gs
	}
	return reg.insert(id)
}

// gstate is one goroutine's state. Only that goroutine reads or writes it.
type gstate struct {
	current *Context // the context it runs in; nil: none yet

	// cache remembers the last lookups of vars in tries of more than one
	// var, as CPython's ContextVar caches its last value: reading a var
	// again costs what reading the only var of a context costs, however
	// many vars the context holds. Entries are checked against the current
	// root, so a Set, a Reset or a change of context simply misses. An entry
	// keeps its trie alive until it is replaced or the goroutine's state is
	// dropped: at most lookupCacheSize tries per goroutine.
	cache  [lookupCacheSize]cacheEntry
	cached bool // some entry of cache may be set

	// nextID and endID are the block of context ids this goroutine hands
	// out (newContextID); taking ids in blocks keeps goroutines off one
	// shared counter.
	nextID, endID uint64

	// The padding rounds the state up to two cache lines, so that
	// goroutines on different cores never write to one line.
	_ [7]byte
}

// contextIDs is the last context id given out in a block; see gstate.
var contextIDs atomic.Uint64

// idBlock is the number of context ids a goroutine takes at once.
const idBlock = 1024

// newContextID returns a context id never returned before: ids come from a
// 63-bit counter, which does not wrap in the life of a process.
func (gs *gstate) newContextID() uint64 {
	if gs.nextID == gs.endID {
		gs.endID = contextIDs.Add(idBlock) + 1
		gs.nextID = gs.endID - idBlock
	}
	id := gs.nextID
	gs.nextID++
	return id
}

// lookupCacheSize is the number of entries of a goroutine's lookup cache,
// indexed by the low bits of the var's hash: enough for the few vars a
// request reads again and again (request ID, span, tenant, deadline).
const lookupCacheSize = 4

// cacheEntry records that in the trie rooted at root, key is bound to leaf
// (nil: not bound).
type cacheEntry struct {
	key  *varCore
	root *node
	leaf *node
}

const (
	// minTable is the smallest table: 64 slots of 16 bytes.
	minTable = 64
	// minSweep is the fewest entries that trigger a sweep. A sweep costs a
	// stop-the-world traceback of every goroutine; below this many entries
	// a few dead goroutines' states cost less than sweeping for them.
	minSweep = 1024
)

// reg is the registry of goroutine states.
var reg = newRegistry()

// registry maps goroutine ids to their states; see the file comment.
type registry struct {
	table atomic.Pointer[gtable] // always safe to load; stored under mu

	mu      sync.Mutex // protects the following and all writes to table
	live    int        // entries in the table
	used    int        // slots of the table that are not empty: live + deleted
	sweepAt int        // live count at which the next insert sweeps
	sweeps  int        // sweeps done, for tests
}

// gtable is an open-addressed hash table with linear probing. Slots go from
// empty to live to deleted and never back, so a probe that meets an empty
// slot has seen every slot its id could be in.
type gtable struct {
	shift uint // 64 - log2(len(slots)), for Fibonacci hashing
	mask  uint64
	slots []gslot
}

// gslot is one entry. id is stored after gs, so a goroutine that loads its
// own id loads the gs stored with it.
type gslot struct {
	id atomic.Int64 // 0: empty; deleted: removed; else a goroutine id
	gs atomic.Pointer[gstate]
}

// deleted marks a slot whose goroutine's entry was removed. Goroutine ids are
// positive.
const deleted = -1

func newRegistry() *registry {
	r := &registry{sweepAt: minSweep}
	r.table.Store(newTable(minTable))
	return r
}

func newTable(size int) *gtable {
	return &gtable{
		shift: uint(64 - bitsLen(size-1)),
		mask:  uint64(size - 1),
		slots: make([]gslot, size),
	}
}

// bitsLen returns the number of bits needed to hold x.
func bitsLen(x int) int {
	n := 0
	for ; x > 0; x >>= 1 {
		n++
	}
	return n
}

// home returns the first slot to probe for id. Goroutine ids are dense and
// nearly sequential; multiplying by 2^64/φ (Knuth's Fibonacci hashing)
// spreads them over the table.
func (t *gtable) home(id int64) uint64 {
	return (uint64(id) * 0x9e3779b97f4a7c15) >> t.shift
}

// lookup returns the state registered for goroutine id, or nil. It takes no
// lock; see the file comment for why a goroutine looking up its own id
// always finds its entry.
func (r *registry) lookup(id int64) *gstate {
	t := r.table.Load()
	for i := t.home(id); ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		switch s.id.Load() {
		case id:
			return s.gs.Load()
		case 0:
			return nil
		}
	}
}

// insert registers a new state for goroutine id, which has none, and
// returns it.
func (r *registry) insert(id int64) *gstate {
	gs := new(gstate)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.live >= r.sweepAt {
		r.sweepLocked()
	}
	t := r.table.Load()
	if 2*(r.used+1) > len(t.slots) {
		t = r.rebuildLocked(func(int64) bool { return true })
	}
	for i := t.home(id); ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if s.id.Load() == 0 {
			s.gs.Store(gs)
			s.id.Store(id)
			r.live++
			r.used++
			return gs
		}
	}
}

// forget removes goroutine id's entry, if any.
func (r *registry) forget(id int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.table.Load()
	for i := t.home(id); ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		switch s.id.Load() {
		case id:
			s.id.Store(deleted)
			s.gs.Store(nil)
			r.live--
			return
		case 0:
			return
		}
	}
}

// sweepLocked drops the entries of goroutines that have exited; see the file
// comment. r.mu must be held.
func (r *registry) sweepLocked() {
	alive := liveGoroutines()
	r.rebuildLocked(func(id int64) bool {
		_, ok := alive[id]
		return ok
	})
	r.sweepAt = max(minSweep, 2*r.live)
	r.sweeps++
}

// rebuildLocked publishes a new table, sized for the entries kept, holding
// the live entries for which keep returns true, and returns it. r.mu must be
// held.
func (r *registry) rebuildLocked(keep func(id int64) bool) *gtable {
	old := r.table.Load()
	var ids []int64
	var gss []*gstate
	for i := range old.slots {
		s := &old.slots[i]
		if id := s.id.Load(); id > 0 && keep(id) {
			ids = append(ids, id)
			gss = append(gss, s.gs.Load())
		}
	}
	size := minTable
	for size < 4*(len(ids)+1) {
		size *= 2
	}
	t := newTable(size)
	for k, id := range ids {
		i := t.home(id)
		for t.slots[i].id.Load() != 0 {
			i = (i + 1) & t.mask
		}
		t.slots[i].gs.Store(gss[k])
		t.slots[i].id.Store(id)
	}
	r.live, r.used = len(ids), len(ids)
	r.table.Store(t)
	return t
}

// liveGoroutines returns the ids of all live user goroutines, read from the
// headers ("goroutine 42 [running]:") of runtime.Stack's traceback of all
// goroutines.
func liveGoroutines() map[int64]struct{} {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	ids := make(map[int64]struct{})
	prefix := []byte("goroutine ")
	for line := range bytes.Lines(buf) {
		if !bytes.HasPrefix(line, prefix) {
			continue
		}
		digits := line[len(prefix):]
		end := 0
		for end < len(digits) && '0' <= digits[end] && digits[end] <= '9' {
			end++
		}
		if id, err := strconv.ParseInt(string(digits[:end]), 10, 64); err == nil {
			ids[id] = struct{}{}
		}
	}
	return ids
}
