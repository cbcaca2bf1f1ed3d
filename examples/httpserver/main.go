// Command httpserver is a Go service built on contextvars, the one the
// README opens with: an "orders" service whose requests get an order id
// from a middleware, log JSON lines that carry the request's vars (slogvars),
// fan out to errgroup tasks that each set a var of their own (WrapErr), and
// call an "inventory" service, which receives the vars as W3C baggage
// (baggagevars) and logs them too.
//
// It starts both services on free loopback ports, places two orders at
// once, prints the services' log lines, and shuts down by itself:
//
//	go run ./examples/httpserver
//
// The rule every line follows: code sees the context it runs in. A task
// logs and sends its own task var, though the context.Context it is given
// (gctx) derives from the request's; only code that runs in no context of
// its own (a plain go statement, http.TimeoutHandler) falls back on the
// contextvars.Context that r.Context() carries.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/go-contextvars/contextvars"
	"github.com/go-contextvars/contextvars/baggagevars"
	"github.com/go-contextvars/contextvars/httpvars"
	"github.com/go-contextvars/contextvars/slogvars"
)

// The vars: set per request (order_id), per task (task), and once per
// service, at start-up (service).
var (
	orderID = contextvars.NewVar[string]("order_id")
	task    = contextvars.NewVar[string]("task")
	service = contextvars.NewVar[string]("service")
)

// propagator sends order_id and task to the services a request calls.
var propagator = baggagevars.New(baggagevars.String(orderID, "order.id"), baggagevars.String(task, "task"))

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "httpserver:", err)
		os.Exit(1)
	}
}

// withOrderID is an id middleware, placed inside httpvars.Handler, the safe
// order: it sets order_id in the request's context. (Outside, it would set
// it on net/http's goroutine before the request's context exists; the
// request would still see it, and the next request on the connection would
// not, but a test suite with contextvars.ForbidImplicit on would panic.)
func withOrderID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		orderID.Set(r.Header.Get("X-Order-Id"))
		next.ServeHTTP(w, r)
	})
}

// orders handles an order: two tasks at once, each with its own task var,
// each calling inventory through client.
func orders(log *slog.Logger, client *http.Client, inventoryURL string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.InfoContext(r.Context(), "order received")
		g, gctx := errgroup.WithContext(r.Context())
		for _, name := range []string{"reserve", "price"} {
			g.Go(contextvars.WrapErr(func() error { // runs in a copy of the request's vars
				defer task.Set(name).Reset() // ... and sets its own
				log.InfoContext(gctx, "task started")
				req, err := http.NewRequestWithContext(gctx, "GET", inventoryURL, nil)
				if err != nil {
					return err
				}
				resp, err := client.Do(req) // baggage: order.id=o-1,task=reserve
				if err != nil {
					return err
				}
				return resp.Body.Close()
			}))
		}
		if err := g.Wait(); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		log.InfoContext(r.Context(), "order done")
	})
}

// inventory answers the calls of orders' tasks; the baggage's vars are set
// in its requests.
func inventory(log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.InfoContext(r.Context(), "stock checked")
	})
}

// run starts both services, places two orders at once, and writes the log
// lines to out.
func run(out io.Writer) error {
	var mu sync.Mutex // the services log from many goroutines
	log := slog.New(slogvars.NewHandler(
		slog.NewJSONHandler(lockedWriter{&mu, out}, &slog.HandlerOptions{ReplaceAttr: dropTime}),
		service, orderID, task))

	outgoing := &http.Transport{}
	client := &http.Client{Transport: propagator.Transport(outgoing)}

	inventoryURL, stopInventory, err := serve("inventory", func() http.Handler {
		return propagator.Handler(inventory(log))
	})
	if err != nil {
		return err
	}
	defer stopInventory()
	// Before stopInventory, whose Shutdown would wait 5 s for a connection
	// the transport dialled but never used.
	defer outgoing.CloseIdleConnections()
	ordersURL, stopOrders, err := serve("orders", func() http.Handler {
		return httpvars.Handler(withOrderID(orders(log, client, inventoryURL)))
	})
	if err != nil {
		return err
	}
	defer stopOrders()

	incoming := &http.Transport{}
	defer incoming.CloseIdleConnections()
	customer := &http.Client{Transport: incoming}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() { errs[i] = placeOrder(customer, ordersURL, fmt.Sprint("o-", i+1)) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// placeOrder sends an order with its id to the orders service.
func placeOrder(client *http.Client, url, id string) error {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-Order-Id", id)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("order %s: %s: %s", id, resp.Status, body)
	}
	return nil
}

// serve starts the service named name on a free loopback port, and
// returns its URL and a func that shuts it down. The handler is built in a
// context where the service var is name: the middleware's base, so every
// request sees it.
func serve(name string, build func() http.Handler) (url string, stop func(), err error) {
	h, err := contextvars.Call(contextvars.New(), func() (http.Handler, error) {
		service.Set(name)
		return build(), nil
	})
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ConnState: httpvars.ConnState(nil)} // keep-alive safety net
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Shutdown(context.Background()); <-done }, nil
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// dropTime leaves the time out of the log lines, so that runs compare.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
