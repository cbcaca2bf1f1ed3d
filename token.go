package contextvars

import (
	"fmt"
	"sync/atomic"
)

// A Token records one [Var.Set] so that [Var.Reset] (or [Token.Reset]) can
// undo it: Python's contextvars.Token. A token is good for one Reset, in the
// context where its Set ran.
//
// Tokens are made only by Var.Set; a zero Token is refused by Reset with
// [ErrNilToken]. A Token's methods may be called from any goroutine.
type Token[T any] struct {
	v      *Var[T]
	ctxID  uint64 // the id of the context Set ran in; see Context.state
	old    T      // the value v had in that context before Set, if hasOld
	hasOld bool   // false is Python's Token.MISSING

	// used is set by the one Reset that consumes the token. Any goroutine
	// may load it.
	used atomic.Bool
}

// binding is a trie leaf: a var bound to a value. Var.Set makes one; so does
// a Reset that restores an old value. It never changes once published.
type binding[T any] struct {
	leaf node // key: the var's core; entry: this binding
	val  T
}

// key and value make *binding[T] the entry of the leaf it holds.
func (b *binding[T]) key() Key   { return b.leaf.key.info.Load().key }
func (b *binding[T]) value() any { return b.val }

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
	return t.old, t.hasOld
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
	if t.used.Load() {
		used = " used"
	}
	return fmt.Sprintf("<Token%s var=%v at %p>", used, t.v, t)
}
