// Command httpserver shows contextvars in a net/http server: the httpvars
// middleware runs each request in a context of its own, the slogvars
// handler puts the request's vars in every log line, and the vars follow
// the request into goroutines started with contextvars.Go and into a worker
// pool through contextvars.Wrap.
//
// It starts a server on a free loopback port, sends three concurrent
// requests with request ids, prints the server's JSON log lines, and shuts
// down by itself:
//
//	go run ./examples/httpserver
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"

	"github.com/go-contextvars/contextvars"
	"github.com/go-contextvars/contextvars/httpvars"
	"github.com/go-contextvars/contextvars/slogvars"
)

// requestID and user are set per request.
var (
	requestID = contextvars.NewVar[string]("request_id")
	user      = contextvars.NewVar[string]("user")
)

// service is set once, at start-up, in the main goroutine's context.
var service = contextvars.NewVar[string]("service")

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "httpserver:", err)
		os.Exit(1)
	}
}

// run does what the command does, writing the log lines to out.
func run(out io.Writer) error {
	logger := slog.New(slogvars.NewHandler(
		slog.NewJSONHandler(out, &slog.HandlerOptions{ReplaceAttr: dropTime}),
		service, requestID, user))

	// A worker pool whose goroutines exist before any request: without
	// Wrap, the jobs would run in the workers' empty contexts.
	jobs := make(chan func())
	var workers sync.WaitGroup
	for range 2 {
		workers.Go(func() {
			for job := range jobs {
				job()
			}
		})
	}

	var handler http.Handler
	_ = contextvars.New().Run(func() error {
		service.Set("demo") // set at start-up: every request sees it
		handler = httpvars.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requestID.Set(r.Header.Get("X-Request-Id"))
			user.Set(r.URL.Query().Get("user"))
			logger.InfoContext(r.Context(), "handling request")

			var wg sync.WaitGroup
			wg.Add(2)
			contextvars.Go(func() {
				defer wg.Done()
				logger.Info("fanned out with contextvars.Go")
			})
			jobs <- contextvars.Wrap(func() {
				defer wg.Done()
				logger.Info("run by a worker pool through contextvars.Wrap")
			})
			wg.Wait()
			name, _ := user.Get()
			fmt.Fprintln(w, "hello,", name)
		}))
		return nil
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info("listening", "addr", ln.Addr().String())

	client := &http.Client{Transport: &http.Transport{}}
	var requests sync.WaitGroup
	errs := make(chan error, 3)
	for i, name := range []string{"alice", "bob", "carol"} {
		requests.Go(func() {
			req, err := http.NewRequest("GET", "http://"+ln.Addr().String()+"/?user="+name, nil)
			if err != nil {
				errs <- err
				return
			}
			req.Header.Set("X-Request-Id", fmt.Sprint("req-", i+1))
			resp, err := client.Do(req)
			if err != nil {
				errs <- err
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			errs <- resp.Body.Close()
		})
	}
	requests.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}

	client.CloseIdleConnections()
	if err := srv.Shutdown(context.Background()); err != nil {
		return err
	}
	if err := <-served; err != http.ErrServerClosed {
		return err
	}
	close(jobs)
	workers.Wait()
	logger.Info("shut down")
	return nil
}

// dropTime leaves the time out of the log lines, so that runs compare.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
