package httpvars_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-contextvars/contextvars"
	"github.com/go-contextvars/contextvars/httpvars"
	"github.com/go-contextvars/contextvars/slogvars"
)

var (
	rvOrder = contextvars.NewVar[string]("order_id")
	rvTask  = contextvars.NewVar[string]("task")
)

// rvWithOrderID is the README's withOrderID middleware.
func rvWithOrderID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := r.Header.Get("X-Order-Id"); id != "" {
			rvOrder.Set(id)
		}
		next.ServeHTTP(w, r)
	})
}

func rvGet(t *testing.T, client *http.Client, url, orderID string) string {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	require.NoError(t, err)
	if orderID != "" {
		req.Header.Set("X-Order-Id", orderID)
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestSeams_timeoutHandlerSetDropsRequestVarsFromLogs: README's advice for
// http.TimeoutHandler is httpvars.Handler outside it; the handler then runs
// on TimeoutHandler's goroutine, in no context, and its logs get the
// request's vars from r.Context(). As soon as that handler sets a var of
// its own (an ordinary thing for a handler to do), its goroutine gets an
// implicit context, and from then on order_id silently disappears from its
// log lines ("the failure must be loud").
func TestSeams_timeoutHandlerSetDropsRequestVarsFromLogs(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	logger := slog.New(&lockedJSON{mu: &mu, h: slog.NewJSONHandler(&buf, nil)})
	logger = slog.New(slogvars.NewHandler(logger.Handler(), rvOrder, rvTask))
	h := httpvars.Handler(rvWithOrderID(http.TimeoutHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		logger.InfoContext(r.Context(), "before set")
		rvTask.Set("render")
		logger.InfoContext(r.Context(), "after set")
	}), time.Minute, "timeout")))
	srv := httptest.NewServer(h)
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	rvGet(t, &http.Client{Transport: tr}, srv.URL, "o-1")
	mu.Lock()
	defer mu.Unlock()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2)
	assert.Contains(t, lines[0], `"order_id":"o-1"`)
	assert.Contains(t, lines[1], `"order_id":"o-1"`, "order_id vanished from the log line after the handler set a var")
}

// TestSeams_afterFuncAndPlainGoroutine: code that runs in no context reads
// the request's vars from r.Context() (context.AfterFunc, a plain go).
func TestSeams_afterFuncAndPlainGoroutine(t *testing.T) {
	got := make(chan string, 2)
	h := httpvars.Handler(rvWithOrderID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(r.Context())
		stop := context.AfterFunc(ctx, func() {
			v, _ := contextvars.LookupContext(ctx, rvOrder)
			got <- "afterfunc=" + v.(string)
		})
		_ = stop
		var wg sync.WaitGroup
		wg.Go(func() {
			v, _ := contextvars.LookupContext(r.Context(), rvOrder)
			got <- "go=" + v.(string)
		})
		wg.Wait()
		cancel()
	})))
	srv := httptest.NewServer(h)
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	rvGet(t, &http.Client{Transport: tr}, srv.URL, "o-7")
	a, b := <-got, <-got
	assert.ElementsMatch(t, []string{"afterfunc=o-7", "go=o-7"}, []string{a, b})
}

// TestSeams_nilRequest: bad input to the middleware panics with a
// contextvars: error (as Transport's RoundTrip(nil) returns one), not a
// nil-pointer dereference.
func TestSeams_nilRequest(t *testing.T) {
	h := httpvars.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer func() {
		r := recover()
		err, _ := r.(error)
		require.NotNil(t, r)
		if err == nil || !strings.HasPrefix(err.Error(), "contextvars: ") {
			t.Errorf("ServeHTTP(w, nil) panicked with %v, not a contextvars: error", r)
		}
	}()
	h.ServeHTTP(httptest.NewRecorder(), nil)
}

// TestSeams_runWithMiddlewareBetweenLeaksOverKeepAlive: two id middlewares
// outside httpvars.Handler: withOrderID, written with Set (the README's),
// and a tenant middleware written with contextvars.RunWith (the form the
// README recommends for middleware outside Handler). httpvars then runs
// inside RunWith's Run, where DropImplicit does nothing, so order_id stays
// on the connection's goroutine, and the next request on the keep-alive
// connection, which has no X-Order-Id, is served with the previous one's.
func TestSeams_runWithMiddlewareBetweenLeaksOverKeepAlive(t *testing.T) {
	withTenant := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_ = contextvars.RunWith(func() error { next.ServeHTTP(w, r); return nil },
				contextvars.Bind(rvTask, r.Header.Get("X-Tenant")))
		})
	}
	h := rvWithOrderID(withTenant(httpvars.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := rvOrder.Get()
		io.WriteString(w, "order="+id)
	}))))
	srv := httptest.NewServer(h)
	defer srv.Close()
	tr := &http.Transport{MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	assert.Equal(t, "order=o-1", rvGet(t, client, srv.URL, "o-1"))
	assert.Equal(t, "order=", rvGet(t, client, srv.URL, ""), "the previous request's order id leaked over keep-alive")
}

// TestSeams_timeoutHandlerNestedHandler: the README says to put
// httpvars.Handler outside http.TimeoutHandler. A team that also wants the
// handler to run in a Context of its own (to Set vars safely, as the README
// tells them to) puts a second httpvars.Handler inside TimeoutHandler. That
// inner Handler runs on TimeoutHandler's goroutine, which runs in no
// context: it must build the request's context from the Context that
// r.Context() carries, or the request's vars are silently gone.
func TestSeams_timeoutHandlerNestedHandler(t *testing.T) {
	inner := httpvars.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rvTask.Set("render") // a handler's own var: safe inside a Run
		id, _ := rvOrder.Get()
		io.WriteString(w, "order="+id)
	}))
	h := httpvars.Handler(rvWithOrderID(http.TimeoutHandler(inner, time.Minute, "timeout")))
	srv := httptest.NewServer(h)
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	assert.Equal(t, "order=o-1", rvGet(t, &http.Client{Transport: tr}, srv.URL, "o-1"))
}
