package httpvars_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-contextvars/contextvars"
	"github.com/go-contextvars/contextvars/httpvars"
)

// pipeListener is a net.Listener over net.Pipe, usable in a synctest bubble.
type pipeListener struct {
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, errors.New("closed")
	}
}
func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{} }
func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	c, s := net.Pipe()
	select {
	case l.conns <- s:
		return c, nil
	case <-l.done:
		return nil, errors.New("closed")
	}
}

// TestSeams_synctestKeepAlive: a server in a synctest bubble, with the
// README's withOrderID outside httpvars.Handler and sets inside, over one
// keep-alive connection, with the fake clock moving (timeouts, sleeps).
func TestSeams_synctestKeepAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newPipeListener()
		h := rvWithOrderID(httpvars.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, _ := rvOrder.Get()
			rvTask.Set("t")
			time.Sleep(time.Second)
			done := make(chan string)
			contextvars.Go(func() { g, _ := rvOrder.Get(); done <- g })
			io.WriteString(w, id+"/"+<-done)
		})))
		srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Minute, IdleTimeout: time.Hour}
		served := make(chan struct{})
		go func() { defer close(served); _ = srv.Serve(l) }()
		tr := &http.Transport{DialContext: l.dial, MaxConnsPerHost: 1}
		client := &http.Client{Transport: tr, Timeout: time.Hour}
		for i, id := range []string{"o-1", "", "o-3", ""} {
			req, err := http.NewRequest("GET", "http://x/", nil)
			require.NoError(t, err)
			if id != "" {
				req.Header.Set("X-Order-Id", id)
			}
			resp, err := client.Do(req)
			require.NoError(t, err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, id+"/"+id, string(b), "request %d", i)
		}
		tr.CloseIdleConnections()
		require.NoError(t, srv.Close())
		<-served
		synctest.Wait()
	})
}
