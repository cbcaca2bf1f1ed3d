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
	_ noCopy // first: b stays at offset 0 (see binding)

	// b is the binding Set made. Where the var's info says tokenIsBinding
	// (T holds no pointers and is small), b is the very binding Set put
	// into the trie, so that a Set allocates once; else b holds no value,
	// and the trie's binding is another allocation, so that a trie never
	// keeps the token's old value alive (see Var.Set).
	//
	// b.leaf.key is the core of the token's var (nil in a zero Token), and
	// b.leaf.word is the token's state: the id of the context Set ran in
	// (see Context.state) and the flags tokenHasOld and tokenUsed. Set
	// writes it before returning the token or publishing the binding;
	// afterwards it is read and swapped atomically (Token.state), and only
	// the one Reset that consumes the token changes it, setting tokenUsed.
	b binding[T]

	old T // the value the var had in the context before Set, if tokenHasOld
}

// Flags of a token's state; the bits below them hold a context id.
const (
	tokenUsed   = 1 << 63
	tokenHasOld = 1 << 62
	ctxIDMask   = tokenHasOld - 1
)

// binding is a trie leaf: a var bound to a value. Var.Set makes one (often
// as the first field of its Token); so does a Reset that restores an old
// value. Its key and value never change once published; its leaf's word may,
// if it is a token's state (see node).
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
	if t == nil || t.b.leaf.key == nil {
		return nil
	}
	return t.b.leaf.key.info.Load().key.(*Var[T]) // a var has info before its first token
}

// state returns t's state (see Token.b).
func (t *Token[T]) state() uint64 { return atomic.LoadUint64(&t.b.leaf.word) }

// OldValue returns the value t's var had in the context before the Set that
// made t. The ok result is false if the var had no value there, whatever its
// default: Python's Token.MISSING.
func (t *Token[T]) OldValue() (T, bool) {
	if t == nil {
		var zero T
		return zero, false
	}
	return t.old, t.state()&tokenHasOld != 0
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
	if t.state()&tokenUsed != 0 {
		used = " used"
	}
	return fmt.Sprintf("<Token%s var=%v at %p>", used, t.Var(), t)
}
