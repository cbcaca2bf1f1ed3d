package contextvars

// This file holds a goroutine's state (gstate): its current context and its
// lookup cache, and state, the way every operation but entering a Run finds
// the calling goroutine's state: the registry's atHome inlined, its slow
// path not. (Entering a Run pairs atHome with lookupOrClaim, which finds or
// claims a state in one call.)
//
// Invariant: only the goroutine that owns a gstate reads or writes its
// fields after owner, so they need no synchronization. Only a bucket's slot
// changes hands (a chain state serves one goroutine and is unlinked): its
// owner's free stores 0 in owner and the next owner's claim swaps its id in
// (registry.go), atomics that order one owner's writes before the next
// owner's. A goroutine that finds its
// state has a current context: it is inside a Run, or holds an implicit
// context. The lookup cache refers only to tries that the goroutine's
// contexts hold anyway: it is cleared whenever the current trie is replaced
// and whenever the goroutine leaves a Run.

import "sync/atomic"

// gstate is one goroutine's state. Only its owner reads or writes the fields
// after owner.
type gstate struct {
	// The zero-length array gives gstate atomic.Uint64's alignment, 8
	// bytes, on 32-bit platforms too, where a uint64 needs only 4: a
	// bucket's slot (homeBucket.slot) is a field, not an allocation
	// (whose first word is 8-byte aligned), and owner's atomics need it.
	_ [0]atomic.Uint64

	// owner is the id of the goroutine whose state this is, with flags; 0
	// if the state is a free slot, ownerUnlinked if it is a chain state
	// unlinked (see registry.go). It is read and changed with sync/atomic
	// only.
	owner uint64

	// nextID is the next of the idsLeft context ids left in the block
	// this state hands out (newContextID); taking ids in blocks keeps
	// goroutines off one shared counter. A slot's block passes on with it
	// to its next owner.
	nextID  uint64
	idsLeft uint32

	cached bool // some entry of cache may be set

	// dropPending asks the outermost Run, as it restores the implicit
	// context, to drop it: DropImplicit was called inside a Run.
	dropPending bool

	// hooked is set whenever hookCtx is, so that a slot's free, which
	// must leave hookCtx nil, need not touch its cache line otherwise.
	hooked bool

	current *Context // the context the goroutine runs in; nil: none

	// next links the states of one registry bucket (registry.go): read
	// with atomic loads by anyone, stored by the bucket's mutex holder.
	next atomic.Pointer[gstate]

	// implicit is the goroutine's implicit context (made by a Set outside
	// any Run), or nil. The goroutine is outside any Run exactly when
	// current == implicit.
	implicit *Context

	// hookCtx is, while switch hooks run on the goroutine, the context
	// the switch leaves (entering) or goes back to (leaving), which the
	// goroutine has entered or holds as its implicit context, so that
	// only it writes it: a hook's read of it need not end its edit tag
	// (Context.valueLeaf). nil otherwise; every free clears it, so that
	// it never names a context another goroutine may write.
	hookCtx *Context

	// home is the bucket whose chain the state is in (registry.go): set
	// before the state is published, and never changed; nil for a
	// bucket's slot, which is in no chain.
	home *bucket

	// The fields above are all a goroutine's Run, Set and Get and its
	// state's free touch (home only for a chain state's), but for the
	// lookup cache of a context of more than one var: they fit in the
	// state's first 64 bytes, one cache line (a 192-byte object is 64-byte
	// aligned), which a new goroutine usually misses, as states are spread
	// over the buckets. Those up to current come first: in a slot they
	// share the bucket's first 64 bytes with its head (homeBucket.slot).

	// cache remembers the last lookups of vars in tries of more than one
	// var, as CPython's ContextVar caches its last value: reading a var
	// again costs what reading the only var of a context costs, however
	// many vars the context holds. Entries are checked against the current
	// root, so a hit is always right. An entry keeps its trie alive, so the
	// cache is cleared whenever the goroutine's current trie is replaced
	// (Set, Reset) and whenever it leaves a Run: it only ever refers to
	// tries that the goroutine's contexts hold anyway.
	cache [lookupCacheSize]cacheEntry

	// The padding rounds the state up to a size class of its own (192
	// bytes), so that states of goroutines on different cores, which are
	// allocated side by side, share few cache lines.
	_ [32]byte
}

// callHooks calls the switch hooks hs for the goroutine's switch from prev
// to c, its current context now, with prev as hookCtx meanwhile. If a hook
// panics or exits the goroutine, hookCtx stays set until the Run's exit
// clears it (Context.exit).
func (gs *gstate) callHooks(hs *hookList, prev, c *Context) {
	gs.hookCtx, gs.hooked = prev, true
	hs.call(prev, c)
	gs.hookCtx = nil
}

// clearCache drops the goroutine's lookup cache.
func (gs *gstate) clearCache() {
	gs.cache, gs.cached = [lookupCacheSize]cacheEntry{}, false
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

// contextIDs is the last context id given out in a block; see gstate.
var contextIDs atomic.Uint64

// idBlock is the number of context ids a state takes at once.
const idBlock = 1024

// newContextID returns a context id never returned before: ids come from a
// 62-bit counter, which does not wrap in the life of a process.
func (gs *gstate) newContextID() uint64 {
	if gs.idsLeft == 0 {
		gs.nextID = contextIDs.Add(idBlock) + 1 - idBlock
		gs.idsLeft = idBlock
	}
	id := gs.nextID
	gs.nextID++
	gs.idsLeft--
	return id
}

// setRoot publishes root as the trie of the goroutine's current context
// (Set and Reset), and drops the lookup cache, which may hold the trie
// root replaces.
func (gs *gstate) setRoot(root *node) {
	gs.current.root.Store(root)
	if gs.cached {
		gs.clearCache()
	}
}

// setRootIfNew is setRoot after a write that may have changed old, the
// root, in place (an owned node, hamt.go): it stores root only if it is a
// new node, sparing the write an atomic exchange where old changed in place
// (the in-place stores are atomic themselves), and drops the cache either
// way.
func (gs *gstate) setRootIfNew(old, root *node) {
	if root != old {
		gs.current.root.Store(root)
	}
	if gs.cached {
		gs.clearCache()
	}
}

// state returns the calling goroutine's state, or nil if it has none (it is
// outside any Run and holds no implicit context). It is how every operation
// finds the goroutine's state: the lookup's fast path is inlined here, its
// slow path is not.
func state() *gstate {
	id := goroutineID()
	if gs := reg.atHome(id); gs != nil {
		return gs
	}
	return reg.lookupSlow(id)
}

// current returns the calling goroutine's current context, or nil if it has
// none.
func current() *Context {
	if gs := state(); gs != nil {
		return gs.current
	}
	return nil
}

// newImplicit registers the calling goroutine, which has no state, with an
// implicit context, and returns its state; k is the var being set. It
// panics, before registering, if implicit contexts are forbidden
// (ForbidImplicit) or the goroutine runs a cgo callback (see Var.Set); on
// a goroutine that runs finalizers or cleanups, it keeps the state from
// sweeps (registry.pin).
//
//go:noinline
func newImplicit(k *varCore) *gstate {
	if forbidImplicit.Load() {
		panic(errOutsideRun(k.name, "implicit contexts are forbidden (ForbidImplicit)"))
	}
	id := goroutineID()
	switch startOf(id) {
	case startCgoCallback:
		panic(errOutsideRun(k.name, "in a cgo callback, whose goroutine the runtime reuses for other C threads; run the callback's body in Context.Run"))
	case startHidden:
		// A finalizer or cleanup: pinned before the state is claimed,
		// so that no sweep drops it, though runtime.Stack leaves the
		// goroutine out while it is idle.
		reg.pin(id)
	}
	gs := reg.acquireImplicit(id)
	c := new(Context)
	// Entered for good: the implicit context is current on this goroutine
	// whenever it is outside any Run, so no Run may enter it, here or on
	// another goroutine that got it from a SwitchHook. (Nothing leaves
	// it: it is dropped whole.)
	c.state.Store(enteredBit | gs.newContextID()) // its id too: Set needs one
	gs.current, gs.implicit = c, c
	return gs
}

// dropImplicit drops the calling goroutine's implicit context, if it has one
// and is outside any Run, and frees its state; it reports whether it did.
// Inside a Run, the implicit context is the one the outermost Run restores:
// it marks it to be dropped then instead (gstate.dropPending), and reports
// false.
func dropImplicit() bool {
	gs := state()
	if gs == nil || gs.implicit == nil {
		return false
	}
	if gs.current != gs.implicit {
		gs.dropPending = true
		return false
	}
	implicit := gs.implicit
	reg.free(gs, goroutineID()|ownerImplicit)
	if hs := switchHooks.Load(); hs != nil {
		// The goroutine has left its implicit context, freed before the
		// hooks run, so that none can keep it or, calling DropImplicit,
		// drop it again.
		hs.callEach(0, implicit, nil)
	}
	return true
}

// currentLeaf returns the leaf bound to k in the calling goroutine's current
// context, or nil. It is Var.Get's lookup: a context of one var is answered
// from its root; a larger one through the goroutine's lookup cache, then the
// trie.
func currentLeaf(k *varCore) *node {
	gs := state()
	if gs == nil {
		return nil
	}
	// A goroutine that finds its state has a current context: it is
	// inside a Run or holds an implicit context (see registry.go).
	root := gs.current.root.Load()
	if root == nil || root.key != nil { // a context of at most one var
		return root.get(k)
	}
	// The cache is keyed by (var, root), and the entry holds the root, so
	// its address cannot be reused for another trie while the entry
	// stands. A trie may change in place only by its context's owner
	// (hamt.go, "Ownership"): for the current context that is this
	// goroutine, whose every Set and Reset goes through setRoot, which
	// clears the cache; any other trie the cache refers to was current
	// here earlier, and is either frozen by a copy or held entered by
	// this goroutine's outer Run, so no one changes it. A hit is always
	// right.
	e := &gs.cache[k.hash()&(lookupCacheSize-1)]
	if e.key == k && e.root == root {
		return e.leaf
	}
	l := root.find(k)
	*e = cacheEntry{key: k, root: root, leaf: l}
	gs.cached = true
	return l
}
