// Package httpvars runs every net/http request in a contextvars.Context of
// its own, the way ASGI servers run each request in a copied context.
//
//	service := contextvars.NewVar[string]("service")
//	service.Set("billing")                 // seen by every request
//	http.ListenAndServe(addr, httpvars.Handler(mux))
//
// Each request runs in a new copy of the context that was current when
// Handler was called: values set at start-up are seen by every request, and
// what one request sets is seen by no other, even on the same keep-alive
// connection (net/http serves a connection's requests on one goroutine).
// The request's context.Context carries its Context too
// (contextvars.FromContext), so code that only gets r.Context() can reach
// the request's vars, on other goroutines with contextvars.RunFrom.
package httpvars

import (
	"errors"
	"net/http"

	"github.com/go-contextvars/contextvars"
)

// Handler returns an http.Handler that serves each request with next,
// inside a new copy of the calling goroutine's current context, taken when
// Handler is called; see the package doc. Handler has the shape of
// middleware, func(http.Handler) http.Handler.
//
// Handler panics if next is nil.
func Handler(next http.Handler) http.Handler {
	if next == nil {
		panic(errors.New("contextvars: httpvars.Handler: nil http.Handler"))
	}
	return &handler{base: contextvars.CopyContext(), next: next}
}

// handler is what Handler returns.
type handler struct {
	base *contextvars.Context // never entered: each request runs in a copy
	next http.Handler
}

// ServeHTTP serves r with h.next inside a new copy of h.base, which
// r.Context() carries.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := h.base.Copy()
	r = r.WithContext(contextvars.WithContext(r.Context(), c))
	_ = c.Run(func() error { // c is new: Run cannot fail
		h.next.ServeHTTP(w, r)
		return nil
	})
}
