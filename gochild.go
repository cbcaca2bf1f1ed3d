package contextvars

// This file holds GoIn and the inheritance of vars by children: what a
// goroutine started with Go, or a func wrapped with Wrap, sees of its
// parent's vars.

import (
	"slices"
	"sync"
	"sync/atomic"
)

// GoIn starts fn in a new goroutine whose current context is c itself, not
// a copy: Python 3.14's threading.Thread(context=c). What fn sets is seen in
// c afterwards. Start a child in an empty context with GoIn(New(), fn).
//
// GoIn enters c before it returns, on behalf of the new goroutine, so it
// returns an error e with errors.Is(e, [ErrAlreadyEntered]), and starts
// nothing, if c is entered already; c stays entered until fn returns. It
// returns an error, and starts nothing, if c or fn is nil. Nothing of the new
// goroutine's state is left behind when fn returns, panics or calls
// runtime.Goexit.
func GoIn(c *Context, fn func()) error {
	switch {
	case c == nil:
		return errNilContext
	case fn == nil:
		return errNilFunc
	case !c.tryEnter():
		return errAlreadyEntered(c)
	}
	go c.runEntered(fn)
	return nil
}

// runEntered runs fn in c, whose ownership flag the calling goroutine was
// handed (GoIn): Run without the claim.
func (c *Context) runEntered(fn func()) {
	gs, prev := c.switchTo()
	hs := switchHooks.Load()
	defer c.exit(gs, prev, hs)
	if hs != nil {
		gs.callHooks(hs, prev, c)
	}
	fn()
}

// inheritRule is what a child sees of a var whose parent set it: nothing
// (drop), or the value derive makes from the parent's leaf. A var with no
// rule passes its value on as it is.
type inheritRule struct {
	drop   bool
	derive func(l *node) *node
}

// inheriting lists the vars that have a rule, so that making a child's
// context looks only at them; nil while there are none.
var inheriting struct {
	mu   sync.Mutex
	vars atomic.Pointer[[]*varCore]
}

// setInherit gives k the rule r, and lists k among the vars with one.
func setInherit(k *varCore, r *inheritRule) {
	inheriting.mu.Lock()
	defer inheriting.mu.Unlock()
	k.inherit.Store(r)
	var list []*varCore
	if l := inheriting.vars.Load(); l != nil {
		list = slices.Clone(*l)
	}
	if !slices.Contains(list, k) {
		list = append(list, k)
	}
	inheriting.vars.Store(&list)
}

// InheritNone makes v's value stay with the goroutine or call that set it:
// a child started with [Go], or a call of a func made by [Wrap], [WrapErr],
// [Pull] or [Pull2], does not see it (Java's InheritableThreadLocal that a
// child does not inherit; CPython's thread-inheritable flag off). An
// explicit [Context.Copy], [CopyContext] or [GoIn] still carries it. It
// returns v, so that a var can be declared with its rule:
//
//	var buf = contextvars.NewVar[*bytes.Buffer]("buf").InheritNone()
//
// Set the rule before the var is used; it may be changed at any time, and
// children made after the change follow it.
func (v *Var[T]) InheritNone() *Var[T] {
	if v == nil {
		panic(errNilVar)
	}
	v.info() // a zero Var gets its hash first
	setInherit(&v.c, &inheritRule{drop: true})
	return v
}

// InheritWith makes a child started with [Go], or a call of a func made by
// [Wrap], [WrapErr], [Pull] or [Pull2], see derive(x) where its parent had v
// set to x (Java's InheritableThreadLocal.childValue): a child span, a
// cloned buffer, a counter of the depth of fan-out. derive runs on the
// parent's goroutine for Go, and on the goroutine that calls the wrapped
// func for Wrap and the others, once per child; it must not panic, nor read
// or set vars. Where the parent has no value for v, the child has none
// either. It returns v. InheritWith panics, with an error whose message
// starts "contextvars: ", if derive is nil.
func (v *Var[T]) InheritWith(derive func(T) T) *Var[T] {
	if v == nil {
		panic(errNilVar)
	}
	if derive == nil {
		panic(errNilFunc)
	}
	v.info()
	setInherit(&v.c, &inheritRule{derive: func(l *node) *node {
		return newBinding(v, derive(leafValue[T](l)))
	}})
	return v
}

// InheritValue makes v pass its value on to children as it is, the default:
// it undoes [Var.InheritNone] and [Var.InheritWith]. It returns v.
func (v *Var[T]) InheritValue() *Var[T] {
	if v == nil {
		panic(errNilVar)
	}
	v.c.inherit.Store(nil)
	return v
}

// childOf returns the context of a child of a goroutine whose context is c
// (nil: none): a copy of c, with the vars that have an inheritance rule
// dropped or derived. It is O(1) while no var has a rule.
func childOf(c *Context) *Context {
	cp := c.Copy()
	list := inheriting.vars.Load()
	if list == nil {
		return cp
	}
	root := cp.root.Load()
	changed := false
	for _, k := range *list {
		r := k.inherit.Load()
		if r == nil {
			continue
		}
		l := root.get(k)
		if l == nil {
			continue
		}
		if r.drop {
			root, _ = root.delete(k)
		} else {
			root, _ = root.set(r.derive(l))
		}
		changed = true
	}
	if changed {
		cp.root.Store(root)
	}
	return cp
}
