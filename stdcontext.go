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

// WithContext returns a copy of parent that carries c, for [FromContext] and
// [RunFrom] to find. Cancellation, deadline and the other values of parent
// are untouched. WithContext panics if parent is nil, as
// context.WithValue does.
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
