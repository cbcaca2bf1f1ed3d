package httpvars_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/go-contextvars/contextvars"
	"github.com/go-contextvars/contextvars/httpvars"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	service   = contextvars.NewVar[string]("service")
	requestID = contextvars.NewVar[string]("request_id")
	user      = contextvars.NewVar[string]("user")
)

// newServer starts a server whose handler reports, for each request, what
// it saw before setting request_id from the X-Request-Id header, and counts
// the connections it accepts.
func newServer(t *testing.T) (srv *httptest.Server, conns *atomic.Int32) {
	t.Helper()
	var h http.Handler
	// Values set where the middleware is built are seen by every request.
	require.NoError(t, contextvars.New().Run(func() error {
		service.Set("billing")
		h = httpvars.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			before, _ := requestID.Get()
			svc, _ := service.Get()
			requestID.Set(r.Header.Get("X-Request-Id"))
			// r.Context() carries the request's Context.
			c, ok := contextvars.FromContext(r.Context())
			inCtx, _ := requestID.In(c)
			fmt.Fprintf(w, "before=%q service=%q carried=%v id=%q", before, svc, ok, inCtx)
		}))
		return nil
	}))
	conns = new(atomic.Int32)
	srv = httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	return srv, conns
}

// TestHandler_keepAlive sends many sequential and concurrent requests over
// two keep-alive connections: no value set by one request is seen by
// another, and every request sees the values set at start-up.
func TestHandler_keepAlive(t *testing.T) {
	srv, conns := newServer(t)
	tr := &http.Transport{MaxConnsPerHost: 2, MaxIdleConnsPerHost: 2}
	client := &http.Client{Transport: tr}
	get := func(id string) string {
		req, err := http.NewRequest("GET", srv.URL, nil)
		require.NoError(t, err)
		req.Header.Set("X-Request-Id", id)
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(body)
	}
	want := func(id string) string {
		return fmt.Sprintf(`before="" service="billing" carried=true id=%q`, id)
	}
	for i := range 50 {
		id := fmt.Sprint("seq-", i)
		assert.Equal(t, want(id), get(id))
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 25 {
				id := fmt.Sprintf("par-%d-%d", g, i)
				assert.Equal(t, want(id), get(id))
			}
		})
	}
	wg.Wait()
	t.Logf("250 requests over %d connections", conns.Load())
	assert.LessOrEqual(t, conns.Load(), int32(2), "the requests shared keep-alive connections")

	tr.CloseIdleConnections()
	srv.Close()
}

// TestHandler_panics: a panicking handler leaves the connection's goroutine
// outside the request's Context, and net/http goes on serving.
func TestHandler_panics(t *testing.T) {
	h := httpvars.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requestID.Set("doomed")
		if r.URL.Path == "/panic" {
			panic(http.ErrAbortHandler)
		}
		got, _ := requestID.Get()
		io.WriteString(w, got)
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	_, err := client.Get(srv.URL + "/panic")
	assert.Error(t, err, "the aborted request fails")
	resp, err := client.Get(srv.URL + "/ok")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "doomed", strings.TrimSpace(string(body)))
}

// TestHandler_middlewareOrder: an id middleware placed outside Handler sets
// its vars on net/http's connection goroutine, outside any Run. Over one
// keep-alive connection, 200 requests each see their own ids and never the
// previous request's, and the values set where Handler was built; placed
// inside, the same.
func TestHandler_middlewareOrder(t *testing.T) {
	// idMiddleware sets request_id from X-Request-Id, and user from
	// X-User only when the request has one (every other request here), so
	// that a user left over from the previous request would show.
	idMiddleware := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requestID.Set(r.Header.Get("X-Request-Id"))
			if u := r.Header.Get("X-User"); u != "" {
				user.Set(u)
			}
			next.ServeHTTP(w, r)
		})
	}
	report := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := requestID.Get()
		u, _ := user.Get()
		svc, _ := service.Get()
		c, _ := contextvars.FromContext(r.Context())
		carried, _ := requestID.In(c)
		fmt.Fprintf(w, "id=%s user=%s service=%s carried=%s", id, u, svc, carried)
		user.Set("set-by-handler") // must not reach the next request either
	})
	cases := []struct {
		name     string
		chain    func(http.Handler) http.Handler
		requests int
	}{
		{"id outside httpvars", func(h http.Handler) http.Handler { return idMiddleware(httpvars.Handler(h)) }, 200},
		{"id inside httpvars", func(h http.Handler) http.Handler { return httpvars.Handler(idMiddleware(h)) }, 50},
		{"id between two httpvars", func(h http.Handler) http.Handler {
			return httpvars.Handler(idMiddleware(httpvars.Handler(h)))
		}, 50},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var h http.Handler
			require.NoError(t, contextvars.New().Run(func() error {
				service.Set("billing")
				h = tc.chain(report)
				return nil
			}))
			srv := httptest.NewUnstartedServer(h)
			var conns atomic.Int32
			srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					conns.Add(1)
				}
			}
			srv.Start()
			defer srv.Close()
			tr := &http.Transport{MaxConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			for i := range tc.requests {
				req, err := http.NewRequest("GET", srv.URL, nil)
				require.NoError(t, err)
				id, wantUser := fmt.Sprint("r-", i), ""
				req.Header.Set("X-Request-Id", id)
				if i%2 == 0 {
					wantUser = fmt.Sprint("u-", i)
					req.Header.Set("X-User", wantUser)
				}
				resp, err := client.Do(req)
				require.NoError(t, err)
				body, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				require.NoError(t, resp.Body.Close())
				want := fmt.Sprintf("id=%s user=%s service=billing carried=%s", id, wantUser, id)
				if !assert.Equal(t, want, string(body), "request %d", i) {
					break
				}
			}
			assert.Equal(t, int32(1), conns.Load(), "one keep-alive connection served them all")
		})
	}
}

func TestHandler_nil(t *testing.T) {
	assert.PanicsWithError(t, "contextvars: httpvars.Handler: nil http.Handler", func() { httpvars.Handler(nil) })
}

// ExampleHandler shows the middleware around a mux.
func ExampleHandler() {
	requestID := contextvars.NewVar[string]("request_id")
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		requestID.Set(r.Header.Get("X-Request-Id")) // only for this request
		id, _ := requestID.Get()
		fmt.Fprintln(w, "hello,", id)
	})
	srv := httptest.NewServer(httpvars.Handler(mux))
	defer srv.Close()

	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("X-Request-Id", "r-1")
	resp, err := srv.Client().Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(string(body))
	// Output: hello, r-1
}
