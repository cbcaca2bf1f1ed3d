package httpvars_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/go-contextvars/contextvars"
	"github.com/go-contextvars/contextvars/httpvars"
)

// TestTimeoutHandler: behind httpvars.TimeoutHandler a handler reads the
// request's vars with Get, hands them to contextvars.Go, and what a
// middleware behind http.TimeoutHandler sets is dropped when the request
// ends, not left on TimeoutHandler's goroutine; the next request on the
// connection sees none of it. Behind plain http.TimeoutHandler, Get finds
// nothing (the case this exists for).
func TestTimeoutHandler(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := rvOrder.Get()
		task, _ := rvTask.Get()
		child := make(chan string)
		contextvars.Go(func() { v, _ := rvOrder.Get(); child <- v })
		io.WriteString(w, "order="+id+" task="+task+" child="+<-child)
	})
	setTask := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rvTask.Set("t") // outside any Run on TimeoutHandler's goroutine
			next.ServeHTTP(w, r)
		})
	}
	tests := []struct {
		name  string
		h     http.Handler
		want1 string // with X-Order-Id: o-1
		want2 string // then without
	}{
		{"httpvars.TimeoutHandler",
			httpvars.Handler(rvWithOrderID(httpvars.TimeoutHandler(setTask(app), time.Minute, "timeout"))),
			"order=o-1 task=t child=o-1", "order= task=t child="},
		{"http.TimeoutHandler around a Handler",
			httpvars.Handler(rvWithOrderID(http.TimeoutHandler(setTask(httpvars.Handler(app)), time.Minute, "timeout"))),
			"order=o-1 task=t child=o-1", "order= task=t child="},
		{"plain http.TimeoutHandler: Get finds nothing",
			httpvars.Handler(rvWithOrderID(http.TimeoutHandler(app, time.Minute, "timeout"))),
			"order= task= child=", "order= task= child="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := contextvars.ReadStats().Implicit
			srv, client := keepAliveServer(t, tt.h)
			assert.Equal(t, tt.want1, rvGet(t, client, srv.URL, "o-1"))
			assert.Equal(t, tt.want2, rvGet(t, client, srv.URL, ""))
			if tt.name != "plain http.TimeoutHandler: Get finds nothing" {
				// At most: a sweep may drop an earlier test's meanwhile.
				assert.LessOrEqual(t, contextvars.ReadStats().Implicit, before, "nothing left on TimeoutHandler's goroutines")
			}
		})
	}
}

func TestTimeoutHandler_nil(t *testing.T) {
	assert.PanicsWithError(t, "contextvars: httpvars.TimeoutHandler: nil http.Handler", func() {
		httpvars.TimeoutHandler(nil, time.Second, "")
	})
}
