package contextvars

// This file holds Var, a context variable, with its reads (Get, GetOr, In),
// Set and Reset, and varCore, the type-independent part of a Var that tries
// use as their key.
//
// Invariant: a var's hash and info are set before any binding of it exists
// (by NewVar, or by a zero Var's first Set) and never change after, so code
// that finds a binding of the var can rely on both.

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"
)

// Key is a var used as a key of a [Context]: any *[Var][T]. It lets the
// untyped Context methods ([Context.Get], [Context.Contains], [Context.All])
// take and yield vars of every type. Key is sealed: only *Var[T] implements
// it. Two Keys are equal only if they are the same *Var.
type Key interface {
	// Name returns the var's name.
	Name() string
	// String returns a description of the var, as Python's repr does.
	String() string

	core() *varCore
}

var _ Key = (*Var[int])(nil)

// A Var is a context variable, Python's contextvars.ContextVar: a key whose
// value is looked up in the calling goroutine's current [Context].
//
// Identity is the key: two vars are the same key only if they are the same
// *Var, whatever their names; the name is a label for people. As Python's
// docs advise for ContextVar, create vars once, at package level, and never
// inside closures: every NewVar is a new key, and a context keeps a value for
// as long as the context lives.
//
// A Var is used by pointer and must not be copied. Its methods may be called
// from any goroutine. The zero Var is a var with an empty name and no default,
// ready for use (it takes its hash, its identity in tries, at its first Set);
// prefer NewVar, which names it.
type Var[T any] struct {
	_      noCopy
	c      varCore
	def    T
	hasDef bool
}

// NewVar returns a new var named name with no default: [Var.Get] reports
// ok=false until the var is set in the current context. It is Python's
// ContextVar(name).
func NewVar[T any](name string) *Var[T] {
	v := &Var[T]{}
	v.init(name)
	return v
}

// NewVarWithDefault returns a new var named name whose [Var.Get] returns def
// where the current context has no value for it. It is Python's
// ContextVar(name, default=def).
func NewVarWithDefault[T any](name string, def T) *Var[T] {
	v := &Var[T]{def: def, hasDef: true}
	v.init(name)
	return v
}

// Name returns the name v was made with (ContextVar.name).
func (v *Var[T]) Name() string {
	if v == nil {
		return ""
	}
	return v.c.name
}

// Default returns v's default value. The ok result is false if v has none.
func (v *Var[T]) Default() (T, bool) {
	if v == nil {
		var zero T
		return zero, false
	}
	return v.def, v.hasDef
}

// Get returns v's value in the calling goroutine's current context, or else
// v's default. The ok result is false if v has neither, where Python's
// ContextVar.get() raises LookupError.
//
// Get takes no lock and allocates nothing.
func (v *Var[T]) Get() (T, bool) {
	if l := v.current(); l != nil {
		return leafValue[T](l), true
	}
	return v.def, v.hasDef
}

// GetOr returns v's value in the calling goroutine's current context, or else
// def. As with Python's ContextVar.get(default), def is returned even if v has
// a default of its own.
func (v *Var[T]) GetOr(def T) T {
	if l := v.current(); l != nil {
		return leafValue[T](l)
	}
	return def
}

// In returns v's value in c, ignoring v's default: the typed form of
// Python's ctx.get(var). The ok result is false if c has no value for v or c
// is nil. In may be called from any goroutine.
func (v *Var[T]) In(c *Context) (T, bool) {
	if l := c.valueLeaf(v.core()); l != nil {
		return leafValue[T](l), true
	}
	var zero T
	return zero, false
}

// current returns v's leaf in the calling goroutine's current context, or
// nil: the lookup of Get and GetOr.
func (v *Var[T]) current() *node {
	if v == nil {
		panic(errNilVar)
	}
	return currentLeaf(&v.c)
}

// Set sets v to value in the calling goroutine's current context and returns
// a [Token] that [Var.Reset] takes to restore the value v had before. It is
// Python's ContextVar.set(value). Outside any [Context.Run], Set acts on the
// goroutine's implicit context, made on first use.
//
// Set panics with an error wrapping [ErrOutsideRun], setting nothing, where
// it would make an implicit context that must not be made: while
// [ForbidImplicit] is on, and in a callback from a C thread (cgo), whose
// goroutine the runtime reuses for the callbacks of other threads.
//
// Set allocates nothing where the context already holds a binding of v made
// by a Set since the context was last copied, iterated or read from another
// goroutine, or from inside another Run, or gained or lost a var at the top
// of its trie (any var, in a context of up to 16) (Set changes it in place;
// the first Set in an empty context makes a binding that a second Set
// replaces once), and the token does not outlive the caller: a dropped
// token, or defer v.Set(x).Reset(), stays on the caller's stack where the
// compiler inlines Set, as it does at ordinary call sites (in a closure
// nested in an inlined closure it may not, nor on 32-bit platforms, where
// Reset's 64-bit atomics let it escape). A token the caller keeps is one
// allocation. Otherwise Set makes a new binding, and a var new to the
// context, or a write after a copy, copies the trie nodes on its path, one
// per level.
func (v *Var[T]) Set(value T) *Token[T] {
	t := &Token[T]{}
	v.set(t, value)
	return t
}

// set is Set's work, out of line so that Set inlines: the token stays on
// the caller's stack where the caller does not keep it (set does not let it
// escape).
func (v *Var[T]) set(t *Token[T], value T) {
	if v == nil {
		panic(errNilVar)
	}
	gs := state()
	if gs == nil {
		gs = newImplicit(&v.c)
	}
	v.info() // a zero Var takes its hash here, before any leaf of it exists
	c := gs.current
	id := c.idFor(gs)
	old, replaced, inPlace := setValue(c, gs, &v.c, value, nil)
	switch {
	case replaced != nil:
		t.oldLeaf = replaced
		id |= tokenHasOld
	case inPlace:
		t.old = old
		id |= tokenHasOld
	}
	t.key, t.state.v = &v.c, id
}

// Reset restores v, in the calling goroutine's current context, to the value
// it had before the [Var.Set] that returned t; if v had no value then, Reset
// removes it. It is Python's ContextVar.reset(token).
//
// Reset checks in CPython's order and returns an error, leaving the context
// and t unchanged, if t is nil ([ErrNilToken]), has been used already
// ([ErrTokenUsed]), was made by another var ([ErrTokenVar]), or was made in a
// context other than the current one ([ErrTokenContext]).
//
// Reset allocates nothing where it restores a value, as it changes the value
// back in place where Set could, or else puts back the binding Set replaced;
// only where the context was copied after a Set that changed the value in
// place does it make a new binding. Removing a value copies the trie node
// that loses it.
func (v *Var[T]) Reset(t *Token[T]) error {
	if v == nil {
		return errNilVar
	}
	return t.reset(&v.c)
}

// String returns a description of v in the form of Python's repr:
// <ContextVar name='v' default=1 at 0xc000010000>. A default that refers back
// to v (a slice holding v, say) prints as "...", as in Python.
func (v *Var[T]) String() string {
	if v == nil {
		return "<ContextVar nil>"
	}
	if !v.hasDef {
		return fmt.Sprintf("<ContextVar name=%s at %p>", pyQuote(v.c.name), v)
	}
	def := "..."
	if leave, ok := enterRepr(&v.c); ok {
		def = fmt.Sprintf("%v", v.def)
		leave()
	}
	return fmt.Sprintf("<ContextVar name=%s default=%s at %p>", pyQuote(v.c.name), def, v)
}

// varRepr returns the repr of the var named name that errors print: Python's
// repr less the address and the default, <ContextVar name='v'>.
func varRepr(name string) string { return "<ContextVar name=" + pyQuote(name) + ">" }

// pyQuote returns s quoted as Python's repr quotes a str: in single quotes,
// or in double quotes if s holds a single quote and no double quote; with
// the backslash, that quote, tabs, newlines, carriage returns and other
// characters that are not printable escaped. A byte of invalid UTF-8, which
// a Python str cannot hold, prints as \udcNN, as Python prints the str that
// decoding those bytes with errors="surrogateescape" gives (os.fsdecode):
// so two names that differ print differently.
func pyQuote(s string) string {
	q := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		q = '"'
	}
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte(q)
	for i, r := range s {
		switch {
		case r == '\\' || r == rune(q):
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"): // an invalid byte
			fmt.Fprintf(&b, `\udc%02x`, s[i])
		case r < 0x100 && !unicode.IsPrint(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case !unicode.IsPrint(r) && r < 0x10000:
			fmt.Fprintf(&b, `\u%04x`, r)
		case !unicode.IsPrint(r):
			fmt.Fprintf(&b, `\U%08x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(q)
	return b.String()
}

// info returns v's info, making it at a zero Var's first Set (slow path).
func (v *Var[T]) info() *varInfo {
	if i := v.c.info.Load(); i != nil {
		return i
	}
	return v.infoSlow()
}

// infoSlow is info for a zero Var that has none yet.
//
//go:noinline
func (v *Var[T]) infoSlow() *varInfo {
	// A zero Var gets its hash now, before its info, so before any
	// binding of it: until then no trie holds it, whatever hash a reader
	// looked for it under.
	v.c.h.CompareAndSwap(0, nextHash())
	v.c.info.CompareAndSwap(nil, newInfo(v))
	return v.c.info.Load()
}

// init gives a new var its hash, name and info.
func (v *Var[T]) init(name string) {
	v.c.h.Store(nextHash())
	v.c.name = name
	v.c.info.Store(newInfo(v))
}

// core returns v's key identity, or nil for a nil *Var.
func (v *Var[T]) core() *varCore {
	if v == nil {
		return nil
	}
	return &v.c
}

// reprs records which goroutines are formatting which vars, so that a
// default that holds its own var prints "..." instead of recursing forever
// (Python's Py_ReprEnter). Keyed per goroutine so that concurrent String
// calls on one var do not see each other.
var reprs struct {
	sync.Mutex
	active map[reprKey]struct{}
}

type reprKey struct {
	v  *varCore
	id uint64
}

// enterRepr marks v as being formatted by the calling goroutine. It reports
// false if it already is; otherwise the caller must call leave when done.
func enterRepr(v *varCore) (leave func(), ok bool) {
	k := reprKey{v, goroutineID()}
	reprs.Lock()
	defer reprs.Unlock()
	if _, busy := reprs.active[k]; busy {
		return nil, false
	}
	if reprs.active == nil {
		reprs.active = make(map[reprKey]struct{})
	}
	reprs.active[k] = struct{}{}
	return func() {
		reprs.Lock()
		delete(reprs.active, k)
		reprs.Unlock()
	}, true
}

// hash returns k's hash.
func (k *varCore) hash() uint64 { return k.h.Load() }

// varCore is the type-independent part of a Var: its identity as a trie key.
// Its address is the key; it is never copied after NewVar returns.
type varCore struct {
	// h is the var's hash (see nextHash), set by NewVar, or by a zero
	// Var's first Set (infoSlow) before any binding of the var exists; it
	// never changes after. Read it with hash.
	h    atomic.Uint64
	name string

	// info is set by NewVar, or by the first Set of a zero Var (Var.info).
	// Bindings of the var exist only after it.
	info atomic.Pointer[varInfo]

	// inherit is what children see of the var (gochild.go); nil: its
	// value, as it is.
	inherit atomic.Pointer[inheritRule]
}

// varInfo is what the type-independent code needs to know of a Var[T].
type varInfo struct {
	key Key // the *Var[T] whose core this is

	// value returns the value of a leaf of the var, boxed: the untyped
	// reads of Context use it.
	value func(l *node) any
}

// newInfo returns the info of a var of type T. It is kept out of line: where
// the compiler inlines it (into init), the closure value is compiled there
// without inlining leafValue, which cost Context.Get 2 ns.
//
//go:noinline
func newInfo[T any](v *Var[T]) *varInfo {
	return &varInfo{
		key:   v,
		value: func(l *node) any { return leafValue[T](l) },
	}
}

// hashSeq counts the vars made so far; nextHash mixes it into a hash.
var hashSeq atomic.Uint64

// nextHash returns a new var's hash: the next value of a global counter run
// through the SplitMix64 finalizer (Steele, Lea and Flood, "Fast splittable
// pseudorandom number generators", OOPSLA 2014; constants from Vigna's
// splitmix64.c). The finalizer is a bijection on uint64, so distinct counter
// values give distinct hashes, and it spreads consecutive counters over all
// 64 bits so that the trie stays balanced. Neither the name (vars may share
// one) nor the address (not a stable identity to hash in Go) would do.
func nextHash() uint64 {
	z := hashSeq.Add(1)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
