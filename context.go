package contextvars

// This file holds Context: a mapping from vars to values whose reads see
// snapshots, with the ownership flag that lets one goroutine at a time run in
// it, and its id, which tokens record.
//
// Invariant: only the goroutine that holds a context's ownership flag (see
// "Ownership" below) stores its root or changes its trie's nodes, which it
// does in place only for nodes tagged with the context's edit tag (see
// "Edit tags" below and hamt.go), one atomic store of a kid or a size at a
// time, or a plain store of a leaf's value; every snapshot (Copy,
// CopyContext, All, Keys, Values), and every read of a value by a goroutine
// other than the owner (valueLeaf), first ends that ownership. So any
// goroutine may read a context at any time and sees the complete state after
// some Set or Reset, and a snapshot never changes.

import (
	"fmt"
	"iter"
	"runtime"
)

// A Context is a mapping from vars to values: Python's contextvars.Context.
// Every goroutine has a current context, where [Var.Get] and [Var.Set] look;
// [Context.Run] makes a context current for the length of a call.
//
// A Context's read methods (Len, Contains, Get, All, Keys, Values, Copy,
// String) may be called from any goroutine at any time, also while another
// goroutine is inside c.Run and setting vars. Each read sees a snapshot: the
// complete state after some Set or Reset, never a torn one. Only the goroutine
// running inside c changes it.
//
// A Context is used by pointer. The zero Context is empty and ready for use,
// but [New] or [CopyContext] say what is meant. A Context must not be copied
// by value.
type Context struct {
	_ noCopy

	// root is the trie of bindings. It is always safe to load, and stored
	// only by the goroutine inside c.Run (or, for a goroutine's implicit
	// context, by that goroutine). The store synchronizes before any load
	// that observes it, and the nodes that change after they are published
	// change by atomic stores of whole kids and sizes (hamt.go), so a
	// reader sees a complete trie.
	root rootPtr

	// state holds the ownership flag (enteredBit; see "Ownership" below)
	// and the context's id (the other bits; 0 until the first Set in
	// the context, or its first Run or Call). A token records the id of
	// its context rather than a pointer to it: a pointer would let a
	// trie's leaves keep their contexts, and those contexts' tries,
	// alive, chaining every generation of copies into memory
	// (TestContext_copyChainsDoNotLeak). Any goroutine may load and
	// compare-and-swap state; only the owner, or the goroutine entering
	// c (tryEnterAs), sets the id, and only the owner clears the flag.
	// While the flag is set, only the owner writes state.
	state word

	// edit is the context's edit tag, with editBusy while its owner is
	// changing nodes in place; 0 when no node may change (see "Edit tags"
	// below). Any goroutine may load it and swap a tag without editBusy
	// for 0 (freeze); only the owner sets a tag or editBusy (claim,
	// release).
	edit word
}

// # Ownership
//
// The entered flag of a Context (enteredBit of Context.state) records that
// some goroutine is inside c.Run (or Call). Only the goroutine that enters c
// sets it, with a compare-and-swap from clear (tryEnter); any goroutine may
// load it. That goroutine's deferred exit clears it (leave), and deferred
// calls run on return, on panic and on runtime.Goexit alike, so the flag
// cannot stay set after the goroutine has left Run. A second entrant, the
// same goroutine recursively or another one concurrently, fails the
// compare-and-swap, gets ErrAlreadyEntered, and its fn is not called. So at
// most one goroutine has c current at any time, and only it writes c.root;
// the release of the flag synchronizes before the next entrant's
// compare-and-swap, so the next owner sees every write of the last.

// # Edit tags
//
// A Set or Reset copies the trie path it changes, except for nodes the
// context made since its last snapshot, which it changes in place: so a var
// set again, and a Reset, allocate no trie node, and no leaf (token.go). The
// nodes a context may change are those tagged with its edit tag (node.edit,
// leafTag), a number never used before (a context id: newContextID), taken
// at the context's first Set after a snapshot. A snapshot ends the tag in
// O(1) by storing 0 (freeze):
// the nodes it shares are then changed by no one, and the context's next
// write takes a new tag and copies what it changes, as a copy's first write
// does.
//
// The owner marks each write that may change nodes in place with editBusy
// (claim, release), and freeze waits while the mark is set: a snapshot taken
// by another goroutine (c.Copy() while c runs elsewhere) either sees the
// write whole, or ends the tag before it starts, in which case the write
// copies. A freeze's compare-and-swap reads the release's store, so the
// in-place stores of the writes before it happen before any read of the
// snapshot, plain or atomic.

// editBusy marks, in Context.edit, a write of the owner in progress.
const editBusy = 1 << 63

// claim returns c's edit tag, taking a new one from gs (c's owner's state)
// if c has none, and marks a write in progress; release ends it. Only c's
// owner calls claim, which never fails: a freeze in between leaves 0, and
// then c takes a new tag.
func (c *Context) claim(gs *gstate) uint64 {
	for {
		if e := c.edit.Load(); e != 0 {
			if c.edit.CompareAndSwap(e, e|editBusy) {
				return e
			}
			continue // frozen meanwhile: the tag is gone
		}
		e := gs.newContextID() // never used before, by any context
		if c.edit.CompareAndSwap(0, e|editBusy) {
			return e
		}
	}
}

// release ends the write that claim began; root is the root it made from
// old. Where the write replaced a root that carries tag e, release ends the
// tag too: a snapshot may have loaded old before the write, and old's kids
// (or old itself, a leaf), which the new root shares, are tagged e, so a
// later write under e would change them in place beneath that snapshot. (A
// write that changed old in place, or copied an old root of an earlier
// tag, as the first write after a snapshot does, keeps the tag: no root a
// snapshot may hold shares nodes tagged e.)
func (c *Context) release(e uint64, old, root *node) {
	if root != old && old.tag() == e {
		e = 0
	}
	// A release store (word.go) is enough: only the owner writes edit
	// while editBusy is set, and the in-place writes before it are what
	// it orders; a freeze waits until it sees it.
	c.edit.StoreRelease(e)
}

// freeze ends c's edit tag, if it has one, so that no node of c's trie
// changes after it: every snapshot calls it after loading the root. Any
// goroutine may call it; if c's owner is in the middle of a write, freeze
// waits for the write to end (a few dozen instructions, see Var.Set).
func (c *Context) freeze() {
	for {
		e := c.edit.Load()
		if e == 0 {
			return
		}
		if e&editBusy == 0 {
			if c.edit.CompareAndSwap(e, 0) {
				return
			}
			continue
		}
		runtime.Gosched()
	}
}

// setValue sets the var whose core is k, a Var[T]'s, to val in c, the
// current context of its owner (whose state gs is), and publishes the new
// root: the trie write of Var.Set, and of a Reset that restores a value.
// Where c is empty, the new leaf is its root, and takes no tag. Where c
// holds a leaf of the var made under c's edit tag, its value
// changes in place, nothing is allocated, and setValue returns the value it
// replaced (inPlace). Else a new leaf made under the tag, or spare, a leaf
// of the var bound to val if not nil, goes into the trie, whose untagged
// nodes are copied (hamt.go, "Ownership"), and setValue returns the leaf it
// replaced, nil if none: a leaf that never changes again, since c did not
// hold its tag.
func setValue[T any](c *Context, gs *gstate, k *varCore, val T, spare *node) (old T, replaced *node, inPlace bool) {
	root := c.root.Load()
	if root == nil {
		// The first Set in an empty context (a request's, mostly) takes
		// no tag: its leaf never changes, and a second Set of the var
		// makes one that may. One atomic store, not three.
		if spare == nil {
			spare = newLeaf(k, val, 0)
		}
		gs.setRoot(spare)
		return old, nil, false
	}
	e := c.claim(gs)
	l := root.get(k)
	if l != nil && leafTag(l) == e {
		// The lookup cache, which may hold l, stays right: no node
		// but l changes, and l stays where it is.
		old = leafValue[T](l)
		storeLeafValue(l, val)
		c.release(e, root, root)
		return old, nil, true
	}
	if spare == nil {
		spare = newLeaf(k, val, e)
	}
	newRoot, replaced := root.setIn(spare, e)
	gs.setRootIfNew(root, newRoot)
	c.release(e, root, newRoot)
	return old, replaced, false
}

// remove deletes k's binding from c, the current context of its owner
// (whose state gs is), and publishes the new root: the trie write of a
// Reset whose Set added the var.
func (c *Context) remove(gs *gstate, k *varCore) {
	root := c.root.Load()
	if root == nil || root.key != nil { // no inner node to change
		root, _ = root.delete(k)
		gs.setRoot(root)
		return
	}
	e := c.claim(gs)
	newRoot, _ := root.deleteIn(k, e)
	gs.setRootIfNew(root, newRoot)
	c.release(e, root, newRoot)
}

// enteredBit is the ownership flag in Context.state.
const enteredBit = 1 << 63

// tryEnter sets c's ownership flag and reports whether it was clear.
func (c *Context) tryEnter() bool { return c.tryEnterAs(nil) }

// tryEnterAs is tryEnter for the goroutine whose state is gs, which, if gs
// is not nil, gives c an id from gs's block in the same compare-and-swap
// where c has none yet.
func (c *Context) tryEnterAs(gs *gstate) bool {
	for {
		s := c.state.Load()
		if s&enteredBit != 0 {
			return false
		}
		n := s | enteredBit
		if s == 0 && gs != nil {
			n |= gs.newContextID() // unused if the swap fails: ids are plenty
		}
		if c.state.CompareAndSwap(s, n) {
			return true
		}
		// The id was set between the load and the swap by a goroutine
		// that entered and left meanwhile: look again.
	}
}

// leave clears c's ownership flag. Only the goroutine that entered c calls
// it. It is a sequentially consistent atomic operation, not a release
// store (word.go): Run returns to its caller right after it, and a caller
// may pair that return with atomics of its own (a waiter count beside a Run
// that tries c), whose loads must not pass it.
func (c *Context) leave() { c.state.And(^uint64(enteredBit)) }

// leaveBeforeFree is leave for a goroutine's outermost Run, which frees
// the goroutine's state (registry.free) at once: free makes a locked
// instruction before it returns, which waits for this store, and no code
// of the caller's runs in between, so a release store (word.go) is enough,
// and saves an outermost Run a locked instruction. No other goroutine
// writes c.state while the flag is set (tryEnterAs's compare-and-swap
// fails), so the store loses nothing.
func (c *Context) leaveBeforeFree() { c.state.StoreRelease(c.state.Load() &^ enteredBit) }

// id returns c's id, 0 if none was needed yet.
func (c *Context) id() uint64 { return c.state.Load() &^ enteredBit }

// idFor returns c's id, giving it one from gs's block first if it has none.
// Only c's owner, whose state gs is, calls it.
func (c *Context) idFor(gs *gstate) uint64 {
	if id := c.id(); id != 0 {
		return id
	}
	id := gs.newContextID()
	c.state.Or(id) // rare: Run gives c an id on entry, newImplicit on making it
	return id
}

// New returns a new, empty context: Python's contextvars.Context().
func New() *Context {
	return new(Context)
}

// CopyContext returns a copy of the calling goroutine's current context:
// Python's contextvars.copy_context(). It is O(1): the copy shares the
// original's trie, and later changes to either are not seen by the other.
func CopyContext() *Context {
	// current().Copy(), written out: state's fast path and snapshot's
	// inlined, so that the copy costs the goroutine's lookup and the
	// allocation and little else (bench/compare's CopyContext target).
	id := goroutineID()
	gs := reg.atHome(id)
	if gs == nil {
		gs = reg.lookupSlow(id)
	}
	if gs == nil || gs.current == nil {
		return new(Context) // no current context: an empty copy
	}
	c := gs.current
	root := c.root.Load() // the root, then the freeze: see snapshot
	if c.edit.Load() != 0 {
		c.freeze()
	}
	return &Context{root: rootOf(root)}
}

// Lookup returns the value of key in the calling goroutine's current
// context, ignoring the var's default, boxed: what CopyContext().Get(key)
// returns, without making a copy. The ok result is false if the current
// context holds no value for key. [Var.Get] is the typed form (which does
// fall back on the default). Lookup is for code that handles vars of many
// types alike, such as a log handler adding them to every record.
func Lookup(key Key) (any, bool) {
	k := coreOf(key)
	if k == nil {
		return nil, false
	}
	if l := currentLeaf(k); l != nil {
		return l.value(), true
	}
	return nil, false
}

// Copy returns a shallow copy of c: Python's Context.copy(). It is O(1).
// A nil c copies as an empty context.
func (c *Context) Copy() *Context {
	if c == nil {
		return new(Context)
	}
	return &Context{root: rootOf(c.snapshot())}
}

// Len returns the number of vars set in c: Python's len(ctx).
func (c *Context) Len() int {
	if c == nil {
		return 0
	}
	return c.root.Load().len()
}

// Contains reports whether c holds a value for key: Python's `var in ctx`.
func (c *Context) Contains(key Key) bool {
	return c.leaf(coreOf(key)) != nil
}

// Get returns the value of key in c, ignoring the var's default. The ok
// result is false if c holds no value for key, where Python's ctx[var]
// raises KeyError and ctx.get(var) returns None. [Var.In] is the typed form.
func (c *Context) Get(key Key) (any, bool) {
	if l := c.valueLeaf(coreOf(key)); l != nil {
		return l.value(), true
	}
	return nil, false
}

// All returns an iterator over the vars set in c and their values: Python's
// iter(ctx) and ctx.items(). The order is unspecified. The loop walks the
// snapshot taken when it starts: vars set meanwhile, by the loop body or by
// another goroutine, neither block it nor appear in it.
func (c *Context) All() iter.Seq2[Key, any] {
	return func(yield func(Key, any) bool) {
		c.snapshot().walk(func(l *node) bool {
			return yield(l.varKey(), l.value())
		})
	}
}

// Keys returns an iterator over the vars set in c: Python's ctx.keys(). It
// walks a snapshot, as [Context.All] does.
func (c *Context) Keys() iter.Seq[Key] {
	return func(yield func(Key) bool) {
		c.snapshot().walk(func(l *node) bool {
			return yield(l.varKey())
		})
	}
}

// Values returns an iterator over the values set in c: Python's
// ctx.values(). It walks a snapshot, as [Context.All] does.
func (c *Context) Values() iter.Seq[any] {
	return func(yield func(any) bool) {
		c.snapshot().walk(func(l *node) bool {
			return yield(l.value())
		})
	}
}

// String returns a short description of c: <Context 3 vars>.
func (c *Context) String() string {
	n := c.Len()
	if n == 1 {
		return "<Context 1 var>"
	}
	return fmt.Sprintf("<Context %d vars>", n)
}

// leaf returns the leaf bound to k in c, or nil; nil also for a nil c or
// k. It is the lookup of Contains, which reads no value; Var.Get's lookup
// in the current context (currentLeaf) puts a cache in front of the same
// trie lookup, node.get.
func (c *Context) leaf(k *varCore) *node {
	if c == nil || k == nil {
		return nil
	}
	return c.root.Load().get(k)
}

// valueLeaf is leaf for a read of the leaf's value (Context.Get, Var.In,
// LookupContext): unless c is the calling goroutine's own, one only it
// writes (its current or implicit context, or, in a switch hook, the other
// side of the switch: gstate.hookCtx), it ends c's edit tag after loading
// the root, as a snapshot does, so that the leaf's value does not change
// in place while the caller reads it (token.go, "Leaves that change"). (An
// outer Run's context is the goroutine's own too, but is not told apart
// elsewhere: a read of it ends its tag, and its next write copies.)
func (c *Context) valueLeaf(k *varCore) *node {
	if c == nil || k == nil {
		return nil
	}
	root := c.root.Load()
	if c.edit.Load() == 0 {
		return root.get(k)
	}
	return c.valueLeafTagged(root, k)
}

// valueLeafTagged is valueLeaf for a c with an edit tag, out of line: it
// ends the tag unless c is the calling goroutine's own, and returns k's
// leaf in root.
//
//go:noinline
func (c *Context) valueLeafTagged(root *node, k *varCore) *node {
	if gs := state(); gs == nil || (gs.current != c && gs.implicit != c && gs.hookCtx != c) {
		c.freeze()
	}
	return root.get(k)
}

// coreOf returns key's core, or nil for a nil Key or a nil *Var.
func coreOf(key Key) *varCore {
	if key == nil {
		return nil
	}
	return key.core()
}

// snapshot returns c's trie as it is now, which no one changes after; nil
// for a nil c. It loads the root, then ends c's edit tag (freeze), inline
// where c has none.
func (c *Context) snapshot() *node {
	if c == nil {
		return nil
	}
	// The root first, then the freeze: a root loaded after a freeze may
	// have been made under a tag the owner took after it, and changed
	// in place later. Loaded before, it was made under the tag the
	// freeze ends (or one ended already), and whatever the owner
	// changed in it before the freeze happens before the walk.
	root := c.root.Load()
	if c.edit.Load() != 0 {
		c.freeze()
	}
	return root
}

// varKey returns the var of leaf l. A var's info is set before any binding
// of it exists (see varCore).
func (l *node) varKey() Key { return l.key.info.Load().key }

// value returns the value of leaf l, boxed.
func (l *node) value() any { return l.key.info.Load().value(l) }
