package contextvars

// This file joins a Context to the standard library's context.Context, so
// that code which receives only a context.Context (a callback of a library,
// a gRPC or database hook, a handler down the stack) can reach the vars of
// the request that made it.

import "context"

// ctxKey is the context.Context key under which WithContext stores a
// *Context. It is a type of its own, so that no other package's key can be
// equal to it.
type ctxKey struct{}

// WithContext returns a copy of parent that carries c, for [FromContext],
// [RunFrom] and [LookupContext] to find. Cancellation, deadline and the
// other values of parent are untouched. WithContext panics if parent is
// nil, as context.WithValue does, and if c is nil: a context.Context that
// carried a nil *Context would only fail later, far from the mistake.
//
// The context.Context carries c itself, not a copy: a reader sees what the
// goroutine running inside c has set so far. Code that runs on other
// goroutines should run in a copy ([RunFrom] makes one), since c can be
// entered by one goroutine at a time: c.Run there returns
// [ErrAlreadyEntered] while the request's goroutine is inside c.
func WithContext(parent context.Context, c *Context) context.Context {
	if parent == nil {
		panic(errNilStdContext)
	}
	if c == nil {
		panic(errNilContext)
	}
	return context.WithValue(parent, ctxKey{}, c)
}

// FromContext returns the *Context that ctx carries ([WithContext]), and
// whether it carries one. A nil ctx carries none.
func FromContext(ctx context.Context) (*Context, bool) {
	if ctx == nil {
		return nil, false
	}
	c, ok := ctx.Value(ctxKey{}).(*Context)
	return c, ok && c != nil
}

// RunFrom runs fn in a new copy of the *Context that ctx carries, as the
// calling goroutine's current context, and returns fn's error: one call
// that gives a goroutine which only received a context.Context the vars of
// the request that made it. Changes fn makes stay in the copy.
//
// RunFrom returns an error, without calling fn, if ctx is nil, if it
// carries no *Context ([ErrNoContext]), or if fn is nil.
func RunFrom(ctx context.Context, fn func() error) error {
	c, ok := FromContext(ctx)
	if !ok {
		if ctx == nil {
			return errNilStdContext
		}
		return ErrNoContext
	}
	return c.Copy().Run(fn)
}

// LookupContext returns the value of key for code that runs on the calling
// goroutine and was handed ctx, ignoring the var's default: the one rule by
// which every integration of this package (slogvars, baggagevars, httpvars)
// reads vars.
//
// Code sees the context it runs in. If the calling goroutine is inside a
// [Context.Run], LookupContext looks there, as [Lookup] does, whatever ctx
// carries. If it runs in none (a goroutine started with a plain go
// statement, the goroutine of http.TimeoutHandler, a time.AfterFunc
// callback without [Wrap]), it looks in the *Context that ctx carries
// ([WithContext]). If it holds only an implicit context (made by a
// [Var.Set] outside any Run, on such a goroutine), it looks there first,
// and in the one ctx carries for a key the implicit context lacks: a
// handler behind http.TimeoutHandler that sets a var of its own still logs
// the request's. The ok result is false if no such place holds a value for
// key.
//
// Why the context the code runs in wins over the one ctx carries: the two
// differ only where the code has a context of its own, and then that
// context is the more specific one. A task run by errgroup through
// [WrapErr] gets a context.Context derived from the request's, which
// carries the request's *Context, but runs in a copy in which it may have
// set vars of its own (a task name); its logs and outgoing requests must
// carry those. A goroutine inside some Run that is handed the
// context.Context of another request (a batcher, a cache filling in for
// many callers) likewise reports what it runs in, as Python code, which
// has no other place to look, always does; to act for the other request,
// run in a copy of its context with [RunFrom].
func LookupContext(ctx context.Context, key Key) (any, bool) {
	if l := contextLeaf(ctx, coreOf(key)); l != nil {
		return l.value(), true
	}
	return nil, false
}

// InContext returns v's value for code that runs on the calling goroutine
// and was handed ctx, ignoring v's default: [LookupContext] typed, by the
// same rule (the context the code runs in, or the one ctx carries). The ok
// result is false if no such place holds a value for v. A nil ctx counts as
// carrying none. Inside a Run, ctx is not read at all: to read what ctx
// carries, whatever the goroutine runs in, take c, _ := FromContext(ctx)
// and call v.In(c).
func (v *Var[T]) InContext(ctx context.Context) (T, bool) {
	if v == nil {
		panic(errNilVar)
	}
	if l := contextLeaf(ctx, &v.c); l != nil {
		return leafValue[T](l), true
	}
	var zero T
	return zero, false
}

// contextLeaf returns k's leaf by LookupContext's rule, or nil.
func contextLeaf(ctx context.Context, k *varCore) *node {
	if gs := state(); gs != nil && gs.current != nil {
		if l := gs.current.leaf(k); l != nil || gs.current != gs.implicit {
			return l
		}
	}
	c, _ := FromContext(ctx) // a nil *Context holds nothing
	return c.valueLeaf(k)
}
