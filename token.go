package contextvars

import (
	"fmt"
	"sync/atomic"
	"unsafe"
)

// A Token records one [Var.Set] so that [Var.Reset] (or [Token.Reset]) can
// undo it: Python's contextvars.Token. A token is good for one Reset, in the
// context where its Set ran.
//
// Tokens are made only by Var.Set; a zero Token is refused by Reset with
// [ErrNilToken]. A Token's methods may be called from any goroutine.
type Token[T any] struct {
	v *Var[T]

	// state is the id of the context Set ran in (see Context.state) and
	// the flags tokenHasOld and tokenUsed. Set writes it before returning
	// the token; afterwards it is read and swapped atomically, and only the
	// one Reset that consumes the token changes it, setting tokenUsed.
	state uint64

	// prev is the leaf of the binding Set replaced, if it may be kept
	// (see Var.Set): Reset puts it back instead of allocating a new one.
	prev *node

	old T // the value v had in the context before Set, if tokenHasOld
}

// Flags of Token.state; the bits below them hold a context id.
const (
	tokenUsed   = 1 << 63
	tokenHasOld = 1 << 62
	ctxIDMask   = tokenHasOld - 1
)

// binding is a trie leaf: a var bound to a value. Var.Set makes one; so does
// a Reset that restores an old value. It never changes once published.
//
// Invariant: leaf is the first field, and every leaf in a trie is the leaf
// of a binding[T] whose T is that of the Var[T] its key belongs to — only
// Var[T].Set and Var[T].Reset make leaves, with key &v.c. bindingOf relies
// on both.
type binding[T any] struct {
	leaf node // key: the var's core
	val  T
}

// bindingOf returns the binding whose leaf l is. l must be a leaf keyed by a
// Var[T] of this T (see binding); the trie finds it by that key.
func bindingOf[T any](l *node) *binding[T] {
	return (*binding[T])(unsafe.Pointer(l))
}

// Var returns the var whose [Var.Set] made t (Token.var).
func (t *Token[T]) Var() *Var[T] {
	if t == nil {
		return nil
	}
	return t.v
}

// OldValue returns the value t's var had in the context before the Set that
// made t. The ok result is false if the var had no value there, whatever its
// default: Python's Token.MISSING.
func (t *Token[T]) OldValue() (T, bool) {
	if t == nil {
		var zero T
		return zero, false
	}
	return t.old, atomic.LoadUint64(&t.state)&tokenHasOld != 0
}

// Reset is t.Var().Reset(t). It lets a scoped Set read as one line, as
// Python 3.14's `with var.set(x):` does:
//
//	defer v.Set(x).Reset()
func (t *Token[T]) Reset() error {
	if t == nil {
		return errNilTokenf("(*Token).Reset on a nil *Token")
	}
	if t.v == nil {
		return errNilTokenf("zero Token was not returned by Var.Set")
	}
	return t.v.Reset(t)
}

// String returns a description of t in the form of Python's repr:
// <Token var=<ContextVar name="v" at 0xc000010000> at 0xc000020000>, with
// "used" after "Token" once t has been reset.
func (t *Token[T]) String() string {
	if t == nil {
		return "<Token nil>"
	}
	used := ""
	if atomic.LoadUint64(&t.state)&tokenUsed != 0 {
		used = " used"
	}
	return fmt.Sprintf("<Token%s var=%v at %p>", used, t.v, t)
}
