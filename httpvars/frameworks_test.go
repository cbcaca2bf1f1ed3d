package httpvars_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-contextvars/contextvars"
	"github.com/go-contextvars/contextvars/httpvars"
)

// TestConnState: with httpvars.Handler mounted on some routes only (a
// router group), what an id middleware on the whole router set for a
// request to another route stays on the connection's goroutine, and the
// next request on the connection sees it (the framework review: GET /public
// with X-Order-Id g-1, then GET /api/x without, saw g-1). The ConnState
// hook drops it when each request arrives and ends.
func TestConnState(t *testing.T) {
	api := httpvars.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := rvOrder.Get()
		io.WriteString(w, "order="+id)
	}))
	mux := http.NewServeMux()
	mux.Handle("/api/", api)
	mux.HandleFunc("/public", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "public") })
	h := rvWithOrderID(mux) // on the whole router, outside httpvars

	tests := []struct {
		name      string
		connState func(net.Conn, http.ConnState)
		want      string
	}{
		{"without ConnState: the documented leak", nil, "order=g-1"},
		{"with ConnState", httpvars.ConnState(nil), "order="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(h)
			var mu sync.Mutex
			var states []http.ConnState
			next := func(_ net.Conn, s http.ConnState) { mu.Lock(); states = append(states, s); mu.Unlock() }
			if tt.connState != nil {
				srv.Config.ConnState = httpvars.ConnState(next)
			}
			srv.Start()
			defer srv.Close()
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			assert.Equal(t, "public", rvGet(t, client, srv.URL+"/public", "g-1"))
			assert.Equal(t, tt.want, rvGet(t, client, srv.URL+"/api/x", ""))
			assert.Equal(t, "order=a-2", rvGet(t, client, srv.URL+"/api/x", "a-2"))
			if tt.connState != nil {
				mu.Lock()
				assert.Contains(t, states, http.StateActive, "next is called")
				mu.Unlock()
			}
		})
	}
}

// TestMiddleware: a framework that wraps per request, as echo.WrapMiddleware
// does (it calls the middleware for every request, on the serving
// goroutine), loses the values set at start-up with Handler, whose base is
// the context current when it is called; Middleware takes the base once.
func TestMiddleware(t *testing.T) {
	service := contextvars.NewVar[string]("service")
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := service.Get()
		id, _ := rvOrder.Get()
		io.WriteString(w, s+" "+id)
	})
	// perRequest mounts mw as echo.WrapMiddleware does.
	perRequest := func(mw func(http.Handler) http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { mw(app).ServeHTTP(w, r) })
	}
	var withHandler, withMiddleware http.Handler
	require.NoError(t, contextvars.New().Run(func() error {
		service.Set("billing") // start-up
		withHandler = rvWithOrderID(perRequest(httpvars.Handler))
		withMiddleware = rvWithOrderID(perRequest(httpvars.Middleware()))
		return nil
	}))
	for _, tt := range []struct {
		name string
		h    http.Handler
		want string
	}{
		{"Handler per request: start-up values lost", withHandler, " o-1"},
		{"Middleware", withMiddleware, "billing o-1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, client := keepAliveServer(t, tt.h)
			assert.Equal(t, tt.want, rvGet(t, client, srv.URL, "o-1"))
			assert.Equal(t, tt.want[:len(tt.want)-len("o-1")], rvGet(t, client, srv.URL, ""), "next request on the connection: no id")
		})
	}
	assert.PanicsWithError(t, "contextvars: httpvars.Middleware: nil http.Handler", func() { httpvars.Middleware()(nil) })
}
