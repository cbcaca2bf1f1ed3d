package httpvars_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// keepAliveServer starts a test server of h and returns it with a client
// whose requests share one keep-alive connection, both closed when the
// test ends.
func keepAliveServer(t *testing.T, h http.Handler) (*httptest.Server, *http.Client) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return srv, &http.Client{Transport: tr}
}

// lockedJSON serializes a handler's writes.
type lockedJSON struct {
	mu *sync.Mutex
	h  slog.Handler
}

func (l *lockedJSON) Enabled(ctx context.Context, lv slog.Level) bool { return l.h.Enabled(ctx, lv) }
func (l *lockedJSON) Handle(ctx context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.h.Handle(ctx, r)
}
func (l *lockedJSON) WithAttrs(a []slog.Attr) slog.Handler {
	return &lockedJSON{mu: l.mu, h: l.h.WithAttrs(a)}
}
func (l *lockedJSON) WithGroup(n string) slog.Handler {
	return &lockedJSON{mu: l.mu, h: l.h.WithGroup(n)}
}
