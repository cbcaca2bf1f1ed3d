// Package httpvars runs every net/http request in a contextvars.Context of
// its own, the way ASGI servers run each request in a copied context.
//
//	service := contextvars.NewVar[string]("service")
//	service.Set("billing")                 // seen by every request
//	http.ListenAndServe(addr, httpvars.Handler(mux))
//
// A request runs in a new context made when it arrives: a copy of the
// context that was current when Handler was called (the base: values set
// at start-up are seen by every request), with what the serving goroutine
// holds at arrival set over it. So middleware placed outside Handler, which
// runs on net/http's goroutine before the request's context exists, may set
// vars there (a request id read from a header) and the request sees them;
// and when the request ends, what that goroutine set outside any Run is
// dropped (contextvars.DropImplicit), so the next request on the same
// keep-alive connection (net/http serves a connection's requests on one
// goroutine) sees none of it. What one request sets is seen by no other.
// The order of middleware does not matter, with these limits. A
// middleware that runs after Handler has returned (logging the response,
// say) no longer sees the vars it set before; put Handler outside it. The
// drop runs on the goroutine Handler runs on, so Handler must run on
// net/http's goroutine for every request on the connection: mount it
// around the whole mux, not on some routes, and outside
// http.TimeoutHandler, which runs the rest of the chain on a goroutine of
// its own; else what an outer middleware set can outlive its request.
// Behind Handler, use [TimeoutHandler] in place of http.TimeoutHandler, so
// that the handler behind it runs in the request's vars. The safe order is
// Handler outermost. The drop runs only for a request an http.Server
// serves: a handler called by other code (a test with
// httptest.NewRecorder, an adapter for another server such as fasthttp's)
// runs on a goroutine of that code's, whose vars stay its own, so there
// what a middleware outside Handler sets stays on it too; put such
// middleware inside Handler. [ConnState], set as the http.Server's
// ConnState hook, drops what is left on a connection's goroutine as each
// request arrives and ends, wherever Handler is mounted. (A test suite that turns on
// contextvars.ForbidImplicit makes such an outer Set panic, which finds
// these cases; there, put the middleware inside Handler.)
//
// The request's context.Context carries its Context too
// (contextvars.WithContext), for code that runs in no context of its own: a
// goroutine started with a plain go statement, the goroutine of
// http.TimeoutHandler. Code reads vars by the rule of
// contextvars.LookupContext: it sees the context it runs in, and the one
// its context.Context carries only if it runs in none; contextvars.RunFrom
// runs such code in a copy of the request's vars.
//
// baggagevars' Handler is this middleware with the request's baggage set
// in the request's context: the two follow one rule, and nest in either
// order.
package httpvars

import (
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/go-contextvars/contextvars"
)

// Handler returns an http.Handler that serves each request with next,
// inside a new context made when the request arrives: a copy of the
// calling goroutine's current context, taken when Handler is called, with
// the Context that r.Context() carries (an outer Handler's: one inside
// http.TimeoutHandler runs on another goroutine) and then the serving
// goroutine's current context merged over it; see the package doc. Handler has the shape of middleware, func(http.Handler)
// http.Handler.
//
// Handler panics if next is nil.
func Handler(next http.Handler) http.Handler {
	return newHandler("Handler", contextvars.CopyContext(), next)
}

// Middleware returns middleware, func(http.Handler) http.Handler, that does
// what Handler does, with the base context taken now, when Middleware is
// called, rather than each time the middleware wraps a handler. Use it
// where a framework wraps per request: echo.WrapMiddleware calls the
// middleware for every request, on the serving goroutine, where Handler
// would take that goroutine's context (empty) as the base and the values
// set at start-up would be lost.
//
//	e.Use(echo.WrapMiddleware(httpvars.Middleware()))
func Middleware() func(http.Handler) http.Handler {
	base := contextvars.CopyContext()
	return func(next http.Handler) http.Handler { return newHandler("Middleware", base, next) }
}

// newHandler returns the handler of Handler and Middleware (named by fn, for
// the panic on a nil next).
func newHandler(fn string, base *contextvars.Context, next http.Handler) http.Handler {
	if next == nil {
		panic(errors.New("contextvars: httpvars." + fn + ": nil http.Handler"))
	}
	return &handler{base: base, next: next}
}

// ConnState returns a hook for http.Server's ConnState field that drops
// ([contextvars.DropImplicit]) what the connection's goroutine set outside
// any Run when a request arrives and when it ends, and then calls next, if
// not nil. net/http calls the hook on that goroutine, which serves one
// request of a keep-alive connection after another (HTTP/1), so with it
// nothing a middleware set outside a Run for one request is seen by the
// next, wherever Handler is mounted or whether it runs at all: on some
// routes only (a router group), behind http.TimeoutHandler, or nowhere.
//
//	srv := &http.Server{Addr: addr, Handler: mux, ConnState: httpvars.ConnState(nil)}
//
// Handler drops the same at the end of each request it serves; ConnState
// covers the requests it does not. (HTTP/2 serves each request on a
// goroutine of its own, and hands nothing from one to the next.)
func ConnState(next func(net.Conn, http.ConnState)) func(net.Conn, http.ConnState) {
	return func(c net.Conn, state http.ConnState) {
		if state == http.StateActive || state == http.StateIdle {
			contextvars.DropImplicit()
		}
		if next != nil {
			next(c, state)
		}
	}
}

// handler is what Handler returns.
type handler struct {
	base *contextvars.Context // never entered: each request runs in a merge of it
	next http.Handler
}

// ServeHTTP serves r with h.next inside a new context, h.base with the
// context r.Context() carries, if any (an outer Handler's), over it and the
// serving goroutine's current context over both; r.Context() carries the
// new context.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r == nil {
		panic(errors.New("contextvars: httpvars.Handler: ServeHTTP with a nil *http.Request"))
	}
	if r.Context().Value(http.ServerContextKey) != nil {
		// An http.Server serves r, on a goroutine of its own that will
		// serve the connection's next request too: what middleware
		// outside this one set there, outside any Run, belongs to r.
		// (A request handed to ServeHTTP by other code, a test say, is
		// served on that code's goroutine, whose vars stay its own.)
		// Inside another middleware's Run (contextvars.RunWith), the
		// drop waits for the outermost Run to return.
		defer contextvars.DropImplicit()
	}
	c := h.base
	if carried, ok := contextvars.FromContext(r.Context()); ok {
		// An outer Handler's request context, which this goroutine may
		// not run in (http.TimeoutHandler's goroutine, between the
		// two): the request's vars stay the request's.
		c = contextvars.Merge(c, carried)
	}
	c = contextvars.Merge(c, contextvars.CopyContext())
	r = r.WithContext(contextvars.WithContext(r.Context(), c))
	_ = c.Run(func() error { // c is new: Run cannot fail
		h.next.ServeHTTP(w, r)
		return nil
	})
}

// TimeoutHandler is http.TimeoutHandler(Handler(next), dt, msg): an
// http.TimeoutHandler whose handler runs in the request's vars. Use it in
// place of http.TimeoutHandler behind Handler. http.TimeoutHandler serves
// next on a goroutine of its own, which runs in no context: there
// [contextvars.Var.Get] finds nothing, [contextvars.Go] and
// [contextvars.Wrap] hand on nothing, and what a middleware behind it sets
// stays on that goroutine until a sweep (only log handlers and outgoing
// requests, which read the context.Context, would still see the request's
// vars). The Handler inside runs next in a copy of the request's context,
// which the request's context.Context carries, and drops what is set on
// that goroutine outside any Run when the request ends.
//
// Vars set in next are not seen by code outside it, such as
// a middleware that runs after TimeoutHandler returns, as with any Run.
//
// TimeoutHandler panics if next is nil.
func TimeoutHandler(next http.Handler, dt time.Duration, msg string) http.Handler {
	if next == nil {
		panic(errors.New("contextvars: httpvars.TimeoutHandler: nil http.Handler"))
	}
	return http.TimeoutHandler(Handler(next), dt, msg)
}
