package contextvars

// This file holds Token, the record of one Var.Set, and binding, the trie
// leaf that carries a var's value. It keeps two invariants:
//
//   - A token undoes its Set at most once: its state word is swapped to
//     used by the one Reset that succeeds (Token.consume).
//   - Every leaf of a trie keyed by a Var[T]'s core is the first field of a
//     binding[T] of that same T, so bindingOf can recover the value: only
//     Var[T].Set makes leaves (newToken, newBinding, Token.bind).
//
// Where T holds no pointers and is small, a token is its own binding: Set
// allocates once, and the trie keeps the token (whose old value then refers
// to nothing). The trie sees only the leaf.

import (
	"fmt"
	"strconv"
	"sync/atomic"
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

	// b.leaf.key is the core of the token's var (nil in a zero Token).
	// Where the var's info says tokenIsBinding, b is the very binding Set
	// put into the trie; else b holds no value and the trie's binding is
	// another allocation, so that a trie never keeps the token's old
	// value alive.
	//
	// b.leaf.word is the token's state (see stateWord): the trie leaves a
	// leaf's word to whoever made the leaf, and a token keeps its state
	// there rather than in a field of its own, which would make a
	// Token[int] 48 bytes instead of 32 and Var.Set measurably slower
	// (bench/RESULTS.md).
	b binding[T]

	// ob is the binding of the value the var had in the context before
	// Set, if tokenHasOld: the leaf a Reset puts back, so that a Reset
	// allocates nothing. Once put back, it keeps the token alive in the
	// trie; the token then holds no other value (b.val is the zero value,
	// or, in a token that is its binding, holds no pointers).
	ob binding[T]
}

// Flags of a token's state; the bits below them hold a context id.
const (
	tokenUsed   = 1 << 63
	tokenHasOld = 1 << 62
	ctxIDMask   = tokenHasOld - 1
)

// binding is a trie leaf bound to a value: leaf.key is the var's core. Its
// fields never change once it is in a trie.
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

// newBinding returns a new leaf binding v to val.
func newBinding[T any](v *Var[T], val T) *node {
	return &(&binding[T]{leaf: node{key: &v.c}, val: val}).leaf
}

// newToken returns the token of a Set of v to value, not yet bound to a
// context, and the leaf that Set puts into the trie: the token's own
// binding, one allocation, if isBinding (v's info says tokenIsBinding).
func newToken[T any](v *Var[T], value T, isBinding bool) (*Token[T], *node) {
	t := &Token[T]{b: binding[T]{leaf: node{key: &v.c}}}
	if isBinding {
		t.b.val = value
		return t, &t.b.leaf
	}
	return t, newBinding(v, value)
}

// bind records, before t is returned by Set, the id of the context Set
// ran in and the leaf it replaced there (nil if none).
func (t *Token[T]) bind(ctxID uint64, replaced *node) {
	if replaced != nil {
		t.ob = binding[T]{leaf: node{key: t.b.leaf.key}, val: bindingOf[T](replaced).val}
		ctxID |= tokenHasOld
	}
	*t.stateWord() = ctxID
}

// consume checks, in CPython's order, that t may undo its Set of v in the
// calling goroutine's current context, and marks t used. It returns the
// goroutine's state and whether the var had a value before the Set (t.ob).
// If t may not, it returns an error and leaves t unchanged.
func (t *Token[T]) consume(v *Var[T]) (gs *gstate, hasOld bool, err error) {
	if t == nil {
		return nil, false, errNilTokenf("Reset(nil) of var " + strconv.Quote(v.Name()))
	}
	if t.b.leaf.key == nil {
		return nil, false, errNilTokenf("zero Token was not returned by Var.Set")
	}
	ts := t.loadState()
	if ts&tokenUsed != 0 {
		return nil, false, tokenError(ErrTokenUsed, t.varName(), "has already been used once")
	}
	if t.b.leaf.key != &v.c {
		other := "var " + strconv.Quote(v.Name())
		if v.Name() == t.varName() {
			other = "another var of that name"
		}
		return nil, false, tokenError(ErrTokenVar, t.varName(),
			"was created by a different ContextVar (Reset of "+other+")")
	}
	gs = state()
	if gs == nil || gs.current == nil || gs.current.id() != ts&ctxIDMask {
		return nil, false, tokenError(ErrTokenContext, t.varName(), "was created in a different Context")
	}
	// Only the goroutine whose current context is t's gets here, and a
	// context is current for one goroutine at a time, so the swap cannot
	// fail; it is a compare-and-swap so that a broken promise is an
	// error, not a double reset.
	if !atomic.CompareAndSwapUint64(t.stateWord(), ts, ts|tokenUsed) {
		return nil, false, tokenError(ErrTokenUsed, t.varName(), "has already been used once")
	}
	return gs, ts&tokenHasOld != 0, nil
}

// oldLeaf returns the leaf binding t's var to the value it had before Set,
// which t must have (tokenHasOld).
func (t *Token[T]) oldLeaf() *node { return &t.ob.leaf }

// stateWord returns the address of t's state: the id of the context Set ran
// in (see Context.state) with the flags tokenHasOld and tokenUsed. Set
// writes it before anyone else can see the token; afterwards it is read and
// swapped atomically, and only the one Reset that consumes the token
// changes it.
func (t *Token[T]) stateWord() *uint64 { return &t.b.leaf.word }

// varName returns the name of t's var, for error messages. t is a token
// made by Set (consume refuses a zero one before it names it).
func (t *Token[T]) varName() string { return t.b.leaf.key.name }

// loadState returns t's state.
func (t *Token[T]) loadState() uint64 { return atomic.LoadUint64(t.stateWord()) }

// Var returns the var whose [Var.Set] made t (Token.var).
func (t *Token[T]) Var() *Var[T] {
	if t == nil || t.b.leaf.key == nil {
		return nil
	}
	return t.b.leaf.key.info.Load().key.(*Var[T]) // a var has info before its first token
}

// OldValue returns the value t's var had in the context before the Set that
// made t. The ok result is false if the var had no value there, whatever its
// default: Python's Token.MISSING.
func (t *Token[T]) OldValue() (T, bool) {
	if t == nil {
		var zero T
		return zero, false
	}
	return t.ob.val, t.loadState()&tokenHasOld != 0
}

// Reset is t.Var().Reset(t). It lets a scoped Set read as one line, as
// Python 3.14's `with var.set(x):` does:
//
//	defer v.Set(x).Reset()
func (t *Token[T]) Reset() error {
	if t == nil {
		return errNilTokenf("(*Token).Reset on a nil *Token")
	}
	v := t.Var()
	if v == nil {
		return errNilTokenf("zero Token was not returned by Var.Set")
	}
	return v.Reset(t)
}

// String returns a description of t in the form of Python's repr:
// <Token var=<ContextVar name="v" at 0xc000010000> at 0xc000020000>, with
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
