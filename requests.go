package contextvars

// This file holds what middleware needs to run requests on goroutines it
// does not own, such as net/http's connection goroutines, which serve one
// request after another: Merge, which builds a request's context from the
// middleware's base and what the serving goroutine holds when the request
// arrives, and DropImplicit, which forgets what that goroutine set outside
// any Run once the request is over, so that nothing reaches the next one.

// Merge returns a new context holding every var set in base or in over,
// with over's value where both hold one. Neither base nor over changes, and
// later changes to either are not seen by the result. A nil base or over
// counts as empty.
//
// Merge costs one Set per var of the smaller of the two (none if either is
// empty, or if over is a copy of base that nothing has changed since); the
// result shares the rest of the larger one's trie.
func Merge(base, over *Context) *Context {
	b, o := base.snapshot(), over.snapshot()
	switch {
	case o == nil || o == b:
		return &Context{root: rootOf(b)}
	case b == nil:
		return &Context{root: rootOf(o)}
	}
	root := b
	if o.len() <= b.len() {
		// Put over's bindings into base's trie: they win.
		o.walk(func(l *node) bool {
			root, _ = root.set(l)
			return true
		})
	} else {
		// Put the bindings of base that over lacks into over's trie.
		root = o
		b.walk(func(l *node) bool {
			if o.get(l.key) == nil {
				root, _ = root.set(l)
			}
			return true
		})
	}
	return &Context{root: rootOf(root)}
}

// DropImplicit drops the calling goroutine's implicit context, the one
// [Var.Set] makes outside any [Context.Run], and frees what the package
// keeps for the goroutine; it reports whether there was one to drop.
// Afterwards the goroutine runs in no context until its next Set or Run,
// as a new goroutine does. Inside a Run, DropImplicit reports false and
// drops the implicit context when the goroutine's outermost Run returns,
// the Run that would restore it: so it drops what a middleware set before
// the request's Run also where the request is served inside another
// middleware's Run.
//
// It is for middleware on goroutines that serve one request after another
// (net/http serves the requests of a keep-alive connection on one
// goroutine): what a middleware that runs before the request's Run set on
// such a goroutine belongs to that request, and must not be seen by the
// next. httpvars.Handler calls it when a request ends. Tokens of the dropped
// context can no longer reset anything ([ErrTokenContext]).
func DropImplicit() bool {
	return dropImplicit()
}
