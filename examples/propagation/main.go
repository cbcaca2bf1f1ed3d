// Command propagation shows chosen context vars travelling from one service
// to another as W3C Baggage, through OpenTelemetry's propagation: service A
// sets a tenant and a user for each request and calls service B; B sees
// them set in its own request context, and so does OpenTelemetry's baggage.
// A var that was not chosen (an internal note) does not travel.
//
//	go run ./examples/propagation
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/baggage"

	"github.com/go-contextvars/contextvars"
	"github.com/go-contextvars/contextvars/baggagevars"
	"github.com/go-contextvars/contextvars/httpvars"
)

// note is not among the vars chosen for baggage: it stays in service A.
var note = contextvars.NewVar[string]("note")

// tenant and user are the vars chosen to travel as baggage.
var (
	tenant = contextvars.NewVar[string]("tenant")
	user   = contextvars.NewVar[string]("user")
)

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "propagation:", err)
		os.Exit(1)
	}
}

// serve starts h on a free loopback port and returns its URL and a func
// that stops it.
func serve(h http.Handler) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close(); <-done }, nil
}

// run starts A and B, sends A a few concurrent requests, and writes what B
// saw for each, in request order.
func run(out io.Writer) error {
	p := baggagevars.New(baggagevars.String(tenant, "tenant"), baggagevars.String(user, "user"))

	// Service B: sets the chosen vars from the baggage, then reports.
	bURL, stopB, err := serve(httpvars.Handler(p.Handler(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			t, _ := tenant.Get()
			u, _ := user.Get()
			n, ok := note.Get()
			if !ok {
				n = "(not sent)"
			}
			var members []string
			for _, m := range baggage.FromContext(r.Context()).Members() {
				members = append(members, m.Key()+"="+m.Value())
			}
			slices.Sort(members) // the baggage's order is unspecified
			fmt.Fprintf(w, "tenant=%s user=%s note=%s otel-baggage=%q",
				t, u, n, strings.Join(members, ","))
		}))))
	if err != nil {
		return err
	}
	defer stopB()

	// Service A: each request in its own context; calls B through a
	// client whose transport adds the chosen vars.
	toBTransport := &http.Transport{}
	defer toBTransport.CloseIdleConnections()
	toB := &http.Client{Transport: p.Transport(toBTransport)}
	aURL, stopA, err := serve(httpvars.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tenant.Set(r.URL.Query().Get("tenant"))
		user.Set(r.URL.Query().Get("user"))
		note.Set("internal")
		req, err := http.NewRequestWithContext(r.Context(), "GET", bURL, nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		resp, err := toB.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		_, _ = io.Copy(w, resp.Body)
	})))
	if err != nil {
		return err
	}
	defer stopA()

	requests := []struct{ tenant, user string }{{"acme", "alice"}, {"globex", "bob"}, {"initech", "carol"}}
	lines := make([]string, len(requests))
	errs := make([]error, len(requests))
	clientTransport := &http.Transport{}
	defer clientTransport.CloseIdleConnections()
	client := &http.Client{Transport: clientTransport}
	var wg sync.WaitGroup
	for i, rq := range requests {
		wg.Go(func() {
			resp, err := client.Get(fmt.Sprintf("%s/?tenant=%s&user=%s", aURL, rq.tenant, rq.user))
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			lines[i], errs[i] = fmt.Sprintf("A got tenant=%s user=%s -> B saw: %s", rq.tenant, rq.user, body), err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	fmt.Fprintln(out, strings.Join(lines, "\n"))
	return nil
}
