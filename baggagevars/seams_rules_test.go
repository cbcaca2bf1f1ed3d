package baggagevars_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/baggage"
	"golang.org/x/sync/errgroup"

	"github.com/go-contextvars/contextvars"
	"github.com/go-contextvars/contextvars/baggagevars"
	"github.com/go-contextvars/contextvars/httpvars"
	"github.com/go-contextvars/contextvars/slogvars"
)

// The vars of the orders/inventory services of TestSeams_ordersService.
var (
	orderID = contextvars.NewVar[string]("order_id")
	task    = contextvars.NewVar[string]("task")
)

// inventory starts a service that reports the order and task its request's
// baggage set, and the baggage's members as OpenTelemetry sees them.
func inventory(t *testing.T, p *baggagevars.Propagator) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(httpvars.Handler(p.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o, _ := orderID.Get()
		tk, _ := task.Get()
		fmt.Fprintf(w, "order=%s task=%s otel-task=%s", o, tk, baggage.FromContext(r.Context()).Member("task").Value())
	}))))
	t.Cleanup(srv.Close)
	return srv
}

// TestSeams_ordersService is the service of issue 18, point 1: an "orders"
// service (an id middleware, httpvars, slogvars JSON logs, errgroup tasks
// through WrapErr, each setting its own task var) that calls "inventory"
// through the Transport. Each task's lines logged with InfoContext(gctx)
// and its outgoing baggage carry the task's own var, and the order's.
func TestSeams_ordersService(t *testing.T) {
	p := baggagevars.New(baggagevars.String(orderID, "order.id"), baggagevars.String(task, "task"))
	inv := inventory(t, p)
	invTransport := &http.Transport{}
	defer invTransport.CloseIdleConnections()
	client := &http.Client{Transport: p.Transport(invTransport)}

	var logs syncLog
	logger := slog.New(slogvars.NewHandler(slog.NewJSONHandler(&logs, nil), orderID, task))

	orders := httptest.NewServer(withOrderID(httpvars.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g, gctx := errgroup.WithContext(r.Context())
		replies := make([]string, 2)
		for i, name := range []string{"reserve", "price"} {
			g.Go(contextvars.WrapErr(func() error {
				defer task.Set(name).Reset()
				logger.InfoContext(gctx, "task started")
				req, err := http.NewRequestWithContext(gctx, "GET", inv.URL, nil)
				if err != nil {
					return err
				}
				resp, err := client.Do(req)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				replies[i] = string(body)
				logger.InfoContext(gctx, "task done")
				return err
			}))
		}
		if err := g.Wait(); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		logger.InfoContext(r.Context(), "order done")
		fmt.Fprint(w, strings.Join(replies, "\n"))
	}))))
	defer orders.Close()
	ordersTransport := &http.Transport{}
	defer ordersTransport.CloseIdleConnections()

	for i := range 5 {
		req, err := http.NewRequest("GET", orders.URL, nil)
		require.NoError(t, err)
		id := fmt.Sprint("o-", i)
		req.Header.Set("X-Order-Id", id)
		resp, err := (&http.Client{Transport: ordersTransport}).Do(req)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		assert.Equal(t, fmt.Sprintf("order=%[1]s task=reserve otel-task=reserve\norder=%[1]s task=price otel-task=price", id), string(body),
			"what inventory received from each task")
	}

	// Every line carries its order; a task's lines carry its task.
	count := map[string]int{}
	for _, m := range logs.lines(t) {
		key := fmt.Sprintf("%v %v %v", m["msg"], m["order_id"], m["task"])
		count[key]++
	}
	for i := range 5 {
		for _, name := range []string{"reserve", "price"} {
			assert.Equal(t, 1, count[fmt.Sprintf("task started o-%d %s", i, name)], "logs: %v", count)
			assert.Equal(t, 1, count[fmt.Sprintf("task done o-%d %s", i, name)], "logs: %v", count)
		}
		assert.Equal(t, 1, count[fmt.Sprintf("order done o-%d <nil>", i)], "logs: %v", count)
	}
}

// withOrderID is an id middleware meant to sit outside httpvars: it sets
// order_id from the X-Order-Id header on net/http's goroutine.
func withOrderID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := r.Header.Get("X-Order-Id"); id != "" {
			orderID.Set(id)
		}
		next.ServeHTTP(w, r)
	})
}

// TestSeams_transportRule: the Transport sends the vars of the code that
// sends: a plain goroutine given only the request's ctx sends the
// request's; the goroutine of http.TimeoutHandler likewise; a goroutine
// inside a Run handed another request's ctx sends its own.
func TestSeams_transportRule(t *testing.T) {
	p := baggagevars.New(baggagevars.String(orderID, "order.id"), baggagevars.String(task, "task"))
	inv := inventory(t, p)
	invTransport := &http.Transport{}
	defer invTransport.CloseIdleConnections()
	client := &http.Client{Transport: p.Transport(invTransport)}
	call := func(ctx context.Context) string {
		req, err := http.NewRequestWithContext(ctx, "GET", inv.URL, nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(body)
	}
	req := contextvars.New()
	require.NoError(t, req.Run(func() error { orderID.Set("o-1"); task.Set("checkout"); return nil }))
	reqCtx := contextvars.WithContext(context.Background(), req)

	t.Run("plain goroutine given only ctx", func(t *testing.T) {
		got := make(chan string)
		go func() { got <- call(reqCtx) }()
		assert.Equal(t, "order=o-1 task=checkout otel-task=checkout", <-got)
	})
	t.Run("http.TimeoutHandler's goroutine", func(t *testing.T) {
		srv := httptest.NewServer(withOrderID(httpvars.Handler(http.TimeoutHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, call(r.Context()))
		}), time.Minute, "timeout"))))
		defer srv.Close()
		r, err := http.NewRequest("GET", srv.URL, nil)
		require.NoError(t, err)
		r.Header.Set("X-Order-Id", "o-7")
		resp, err := srv.Client().Do(r)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		srv.Client().CloseIdleConnections()
		assert.Equal(t, "order=o-7 task= otel-task=", string(body))
	})
	t.Run("goroutine in a Run, handed another request's ctx", func(t *testing.T) {
		var got string
		require.NoError(t, contextvars.New().Run(func() error {
			orderID.Set("batch")
			got = call(reqCtx)
			return nil
		}))
		assert.Equal(t, "order=batch task= otel-task=", got, "the context it runs in wins")
	})
}

// TestSeams_middlewareOrder: the id middleware outside, then httpvars and
// the Propagator's Handler in either order, or the Handler alone: over one
// keep-alive connection every request sees its own id and baggage, and
// never the previous request's.
func TestSeams_middlewareOrder(t *testing.T) {
	p := newPropagator()
	report := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o, _ := orderID.Get()
		ten, _ := tenant.Get()
		fmt.Fprintf(w, "order=%s tenant=%s", o, ten)
		tenant.Set("set-by-handler")
	})
	chains := map[string]http.Handler{
		"httpvars then baggage": withOrderID(httpvars.Handler(p.Handler(report))),
		"baggage then httpvars": withOrderID(p.Handler(httpvars.Handler(report))),
		"baggage alone":         withOrderID(p.Handler(report)),
	}
	names := make([]string, 0, len(chains))
	for name := range chains {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(chains[name])
			defer srv.Close()
			tr := &http.Transport{MaxConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			for i := range 40 {
				req, err := http.NewRequest("GET", srv.URL, nil)
				require.NoError(t, err)
				wantOrder, wantTenant := "", ""
				if i%2 == 0 { // every other request has an id, every third a tenant
					wantOrder = fmt.Sprint("o-", i)
					req.Header.Set("X-Order-Id", wantOrder)
				}
				if i%3 == 0 {
					wantTenant = fmt.Sprint("t-", i)
					req.Header.Set("Baggage", "tenant="+wantTenant)
				}
				resp, err := client.Do(req)
				require.NoError(t, err)
				body, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				require.NoError(t, resp.Body.Close())
				if !assert.Equal(t, fmt.Sprintf("order=%s tenant=%s", wantOrder, wantTenant), string(body), "request %d", i) {
					break
				}
			}
		})
	}
}

// syncLog collects JSON log lines written from many goroutines.
type syncLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *syncLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

// lines returns the lines written so far, decoded.
func (l *syncLog) lines(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var ms []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(l.buf.Bytes()), []byte{'\n'}) {
		var m map[string]any
		require.NoError(t, json.Unmarshal(line, &m), "%s", line)
		ms = append(ms, m)
	}
	return ms
}
