package contextvars

// This file holds Token, the record of one Var.Set, and binding, the trie
// leaf that carries a var's value. It keeps these invariants:
//
//   - A token undoes its Set at most once: its state word is marked used
//     by the one Reset that succeeds (Token.consume), which only the
//     goroutine whose current context is the token's can be.
//   - Every leaf of a trie keyed by a Var[T]'s core is the first field of a
//     binding[T] of that same T, so bindingOf can recover the value: only
//     newLeaf, from a Var[T], makes leaves.
//   - No trie refers to a token. A token holds the var, its context's id
//     and the old value, copied; so a Set whose token its caller drops at
//     once, or keeps only for a deferred Reset, leaves it on the caller's
//     stack (Set inlines; set and Reset do not let the token escape).
//
// # Leaves that change
//
// A leaf's word holds the edit tag it was made under (hamt.go, "Ownership";
// 0 if none), which never changes. While the tag is its context's, the
// context's owner may change the leaf's value in place (setValue), by a
// plain store: no other goroutine reads the value meanwhile, since a read
// by any goroutine but the owner loads the root and then ends the tag
// (Context.valueLeaf, snapshot), waiting out a write in progress, and the
// owner's next write copies the leaf instead. So values are read and
// written without atomics, and a Set of a var the context holds, made
// since its last copy, allocates nothing, whatever T is.

import (
	"fmt"
	"unsafe"
)

// A Token records one [Var.Set] so that [Var.Reset] (or [Token.Reset]) can
// undo it: Python's contextvars.Token. A token is good for one Reset, in the
// context where its Set ran.
//
// Tokens are made only by Var.Set; a zero Token is refused by Reset with
// [ErrNilToken]. A Token's methods may be called from any goroutine. A Token
// is used by pointer and must not be copied.
type Token[T any] struct {
	_ noCopy

	// state is the id of the context Set ran in (see Context.state), with
	// the flags tokenHasOld and tokenUsed. Set writes it before anyone
	// else can see the token; afterwards it is read atomically, and only
	// the one Reset that consumes the token changes it. (A word: 64-bit
	// aligned on 32-bit platforms too, which a plain uint64 after the key
	// was not.)
	state word

	key *varCore // the core of the token's var; nil in a zero Token

	// The value the var had in the context before Set, if tokenHasOld,
	// which a Reset puts back: oldLeaf, the leaf Set replaced (which
	// never changes: see setValue), or else old, the value Set changed
	// in place. Neither changes after Set.
	oldLeaf *node
	old     T
}

// Flags of a token's state; the bits below them hold a context id.
const (
	tokenUsed   = 1 << 63
	tokenHasOld = 1 << 62
	ctxIDMask   = tokenHasOld - 1
)

// binding is a trie leaf bound to a value: leaf.key is the var's core, and
// leaf.word its edit tag (see the file comment). Only val may change.
type binding[T any] struct {
	leaf node // first, for bindingOf
	val  T
}

// bindingOf returns the binding whose leaf l is, or nil for a nil l. A
// non-nil l must be a leaf keyed by a Var[T] of this T, as every leaf found
// by that key is (see the file comment); TestUnsafe_bindingOf checks the
// layout it relies on.
func bindingOf[T any](l *node) *binding[T] {
	return (*binding[T])(unsafe.Pointer(l))
}

// leafValue returns the value of l, a leaf of a Var[T]. The caller is the
// owner of the context l is in, or has ended its tag (see the file comment).
func leafValue[T any](l *node) T { return bindingOf[T](l).val }

// storeLeafValue changes the value of l, a leaf of a Var[T] whose tag is
// its context's, to val. Only the context's owner calls it, between
// Context.claim and release.
func storeLeafValue[T any](l *node, val T) { bindingOf[T](l).val = val }

// leafTag returns the edit tag leaf l was made under, 0 if none.
func leafTag(l *node) uint64 { return l.word }

// newLeaf returns a new leaf binding k, the core of a Var[T], to val, made
// under edit tag e (0: none, so that it never changes).
func newLeaf[T any](k *varCore, val T, e uint64) *node {
	return &(&binding[T]{leaf: node{word: e, key: k}, val: val}).leaf
}

// newBinding returns a new leaf binding v to val that never changes (Bind,
// InheritWith).
func newBinding[T any](v *Var[T], val T) *node { return newLeaf(&v.c, val, 0) }

// reset is Var.Reset of t by the var whose core is k, and Token.Reset
// (k = t.key): it undoes t's Set in the calling goroutine's current
// context, after consume's checks.
func (t *Token[T]) reset(k *varCore) error {
	gs, hasOld, err := t.consume(k)
	if err != nil {
		return err
	}
	switch {
	case t.oldLeaf != nil:
		// The binding Set replaced, or its value put back in place.
		setValue(gs.current, gs, k, leafValue[T](t.oldLeaf), t.oldLeaf)
	case hasOld:
		setValue(gs.current, gs, k, t.old, nil)
	default:
		gs.current.remove(gs, k)
	}
	return nil
}

// consume checks, in CPython's order, that t may undo its Set of the var
// whose core is k in the calling goroutine's current context, and marks t
// used. It returns the goroutine's state and whether the var had a value
// before the Set (t.oldLeaf or t.old). If t may not, it returns an error
// and leaves t unchanged.
func (t *Token[T]) consume(k *varCore) (gs *gstate, hasOld bool, err error) {
	if t == nil {
		return nil, false, errNilTokenf("Reset(nil) of " + varRepr(k.name))
	}
	if t.key == nil {
		return nil, false, errNilTokenf("zero Token was not returned by Var.Set")
	}
	ts := t.loadState()
	if ts&tokenUsed != 0 {
		return nil, false, tokenError(ErrTokenUsed, t.varName(), true, "has already been used once")
	}
	if t.key != k {
		other := varRepr(k.name)
		if k.name == t.varName() {
			other = "another ContextVar of that name"
		}
		return nil, false, tokenError(ErrTokenVar, t.varName(), false,
			"was created by a different ContextVar (Reset of "+other+")")
	}
	gs = state()
	if gs == nil || gs.current == nil || gs.current.id() != ts&ctxIDMask {
		return nil, false, tokenError(ErrTokenContext, t.varName(), false, "was created in a different Context")
	}
	// Only the goroutine whose current context is t's gets here, and a
	// context is current for one goroutine at a time, passed on by its
	// ownership flag's release and compare-and-swap (or never, for an
	// implicit context), so no other Reset of t runs meanwhile, and each
	// sees the last one's mark: a release store (word.go) is enough, and
	// costs the scoped Set a locked instruction less than a
	// compare-and-swap. Every way through reset makes a locked
	// instruction after it (claim's compare-and-swap, or a root store),
	// as word.go requires.
	t.state.StoreRelease(ts | tokenUsed)
	return gs, ts&tokenHasOld != 0, nil
}

// varName returns the name of t's var, for error messages. t is a token
// made by Set (consume refuses a zero one before it names it).
func (t *Token[T]) varName() string { return t.key.name }

// loadState returns t's state.
func (t *Token[T]) loadState() uint64 { return t.state.Load() }

// Var returns the var whose [Var.Set] made t (Token.var).
func (t *Token[T]) Var() *Var[T] {
	if t == nil || t.key == nil {
		return nil
	}
	return t.key.info.Load().key.(*Var[T]) // a var has info before its first token
}

// OldValue returns the value t's var had in the context before the Set that
// made t. The ok result is false if the var had no value there, whatever its
// default: Python's Token.MISSING.
func (t *Token[T]) OldValue() (T, bool) {
	if t == nil {
		var zero T
		return zero, false
	}
	if t.oldLeaf != nil {
		return leafValue[T](t.oldLeaf), true
	}
	return t.old, t.loadState()&tokenHasOld != 0
}

// Reset is t.Var().Reset(t). It lets a scoped Set read as one line, as
// Python 3.14's `with var.set(x):` does:
//
//	defer v.Set(x).Reset()
func (t *Token[T]) Reset() error {
	if t == nil {
		return errNilTokenf("(*Token).Reset on a nil *Token")
	}
	if t.key == nil {
		return errNilTokenf("zero Token was not returned by Var.Set")
	}
	return t.reset(t.key)
}

// String returns a description of t in the form of Python's repr:
// <Token var=<ContextVar name='v' at 0xc000010000> at 0xc000020000>, with
// "used" after "Token" once t has been reset.
func (t *Token[T]) String() string {
	if t == nil {
		return "<Token nil>"
	}
	used := ""
	if t.loadState()&tokenUsed != 0 {
		used = " used"
	}
	return fmt.Sprintf("<Token%s var=%v at %p>", used, t.Var(), t)
}
