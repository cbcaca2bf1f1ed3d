package contextvars

// This file holds scoped multi-binding: several vars bound for the length of
// one call (Java's ScopedValue.where(a, x).where(b, y).run(op), TC39's
// AsyncContext.Variable.run).

// A Binding is a var paired with a value, made by [Bind], for [RunWith]. The
// zero Binding binds nothing.
type Binding struct {
	leaf *node // the var's binding, ready to put into a trie; nil: none
	err  error // bad input to Bind, reported by RunWith
}

// Bind returns a Binding of v to value, for [RunWith]. It allocates the
// binding, as [Var.Set] would.
func Bind[T any](v *Var[T], value T) Binding {
	if v == nil {
		return Binding{err: errNilVar}
	}
	v.info() // a zero Var gets its hash first
	return Binding{leaf: newBinding(v, value)}
}

// RunWith runs fn with each of the bindings' vars set to its value, in a copy
// of the calling goroutine's current context, and returns fn's error: the
// vars are bound for the length of the call, and restored on every way out
// (return, panic, runtime.Goexit), since fn runs in a [Context.Run] of the
// copy. Like any Run, what fn sets is seen neither after it nor by the
// caller. A var bound twice takes its last binding.
//
//	err := contextvars.RunWith(handle,
//		contextvars.Bind(requestID, id),
//		contextvars.Bind(tenant, t))
//
// It is Java's ScopedValue.where(a, x).where(b, y).run(op) and TC39's
// AsyncContext.Variable.run, for several vars at once. It returns an error,
// and does not call fn, if fn is nil or a binding was made of a nil *Var.
// It allocates the copy and a path of the trie for the bindings together;
// the bindings were allocated by Bind.
func RunWith(fn func() error, bindings ...Binding) error {
	if fn == nil {
		return errNilFunc
	}
	c := CopyContext()
	root := c.root.Load()
	for _, b := range bindings {
		if b.err != nil {
			return b.err
		}
		if b.leaf != nil {
			root, _ = root.set(b.leaf)
		}
	}
	c.root.Store(root)
	return c.Run(fn)
}
