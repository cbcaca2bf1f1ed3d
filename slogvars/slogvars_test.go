package slogvars_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/slogtest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/go-contextvars/contextvars"
	"github.com/go-contextvars/contextvars/httpvars"
	"github.com/go-contextvars/contextvars/slogvars"
)

var (
	requestID = contextvars.NewVar[string]("request_id")
	user      = contextvars.NewVar[string]("user")
	attempt   = contextvars.NewVarWithDefault("attempt", 1)
)

// TestHandler_slogtest runs the slog.Handler contract tests on a Handler
// wrapping the JSON handler, with none of its vars set.
func TestHandler_slogtest(t *testing.T) {
	t.Run("in the group", func(t *testing.T) {
		testSlogtest(t, func(next slog.Handler) slog.Handler { return slogvars.NewHandler(next, requestID, user, attempt) })
	})
	t.Run("TopLevel", func(t *testing.T) {
		testSlogtest(t, func(next slog.Handler) slog.Handler {
			return slogvars.NewHandler(next, requestID, user, attempt).TopLevel()
		})
	})
}

func testSlogtest(t *testing.T, wrap func(slog.Handler) slog.Handler) {
	var buf bytes.Buffer
	h := wrap(slog.NewJSONHandler(&buf, nil))
	results := func() []map[string]any {
		var ms []map[string]any
		for _, line := range bytes.Split(buf.Bytes(), []byte{'\n'}) {
			if len(line) == 0 {
				continue
			}
			var m map[string]any
			require.NoError(t, json.Unmarshal(line, &m))
			ms = append(ms, m)
		}
		return ms
	}
	require.NoError(t, contextvars.New().Run(func() error {
		return slogtest.TestHandler(h, results)
	}))
}

// logLine logs one record through a Handler on the calling goroutine and
// returns it decoded.
func logLine(t *testing.T, ctx context.Context, with func(*slog.Logger) *slog.Logger) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	logger := slog.New(slogvars.NewHandler(slog.NewJSONHandler(&buf, nil), requestID, user, attempt))
	if with != nil {
		logger = with(logger)
	}
	logger.InfoContext(ctx, "served", "status", 200)
	var m map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &m))
	return m
}

func TestHandler_addsSetVars(t *testing.T) {
	require.NoError(t, contextvars.New().Run(func() error {
		m := logLine(t, context.Background(), nil)
		assert.NotContains(t, m, "request_id", "no var set: nothing added")
		assert.NotContains(t, m, "attempt", "a default is not logged")

		requestID.Set("r-1")
		user.Set("alice")
		m = logLine(t, context.Background(), nil)
		assert.Equal(t, "r-1", m["request_id"], "from the goroutine's current context")
		assert.Equal(t, "alice", m["user"])
		assert.Equal(t, float64(200), m["status"], "the record's own attrs stay")

		// The context the code runs in wins over the one the record's
		// context.Context carries (TestHandler_contextRule has the rest).
		other := contextvars.New()
		require.NoError(t, other.Run(func() error { requestID.Set("r-2"); attempt.Set(3); return nil }))
		m = logLine(t, contextvars.WithContext(context.Background(), other), nil)
		assert.Equal(t, "r-1", m["request_id"], "from the goroutine's current context")
		assert.NotContains(t, m, "attempt", "not set in the goroutine's current context")
		assert.Equal(t, "alice", m["user"])

		// Groups qualify the added attrs as they do the record's.
		m = logLine(t, context.Background(), func(l *slog.Logger) *slog.Logger { return l.With("svc", "billing").WithGroup("req") })
		assert.Equal(t, "billing", m["svc"])
		assert.Equal(t, map[string]any{"request_id": "r-1", "user": "alice", "status": float64(200)}, m["req"])
		return nil
	}))
}

// TestHandler_topLevel: a TopLevel Handler puts the vars outside every
// group the logger opens, nests the record's attrs and WithAttrs' in the
// groups, lets an explicit top-level attribute win over a var, and omits a
// group left empty.
func TestHandler_topLevel(t *testing.T) {
	tests := []struct {
		name string
		with func(*slog.Logger) *slog.Logger
		want map[string]any
	}{
		{"no group", func(l *slog.Logger) *slog.Logger { return l },
			map[string]any{"request_id": "r-1", "user": "alice", "status": float64(200)}},
		{"one group", func(l *slog.Logger) *slog.Logger { return l.With("svc", "billing").WithGroup("req").With("a", 1) },
			map[string]any{"svc": "billing", "request_id": "r-1", "user": "alice",
				"req": map[string]any{"a": float64(1), "status": float64(200)}}},
		{"nested groups", func(l *slog.Logger) *slog.Logger { return l.WithGroup("a").With("x", 1).WithGroup("b") },
			map[string]any{"request_id": "r-1", "user": "alice",
				"a": map[string]any{"x": float64(1), "b": map[string]any{"status": float64(200)}}}},
		{"explicit top-level attr wins", func(l *slog.Logger) *slog.Logger { return l.With("request_id", "mine").WithGroup("g") },
			map[string]any{"request_id": "mine", "user": "alice", "g": map[string]any{"status": float64(200)}}},
		{"same key in a group does not", func(l *slog.Logger) *slog.Logger { return l.WithGroup("g").With("request_id", "inner") },
			map[string]any{"request_id": "r-1", "user": "alice", "g": map[string]any{"request_id": "inner", "status": float64(200)}}},
		{"empty group name", func(l *slog.Logger) *slog.Logger { return l.WithGroup("") },
			map[string]any{"request_id": "r-1", "user": "alice", "status": float64(200)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			h := slogvars.NewHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{
				ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
					if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey || a.Key == slog.MessageKey) {
						return slog.Attr{}
					}
					return a
				},
			}), requestID, user, attempt).TopLevel()
			require.NoError(t, contextvars.New().Run(func() error {
				requestID.Set("r-1")
				user.Set("alice")
				tt.with(slog.New(h)).Info("m", "status", 200)
				return nil
			}))
			var m map[string]any
			require.NoError(t, json.Unmarshal(buf.Bytes(), &m))
			assert.Equal(t, tt.want, m)
		})
	}

	// A group opened before TopLevel stays around the vars; one opened
	// after does not; a group that ends up empty is left out.
	var buf bytes.Buffer
	inner := slogvars.NewHandler(slog.NewJSONHandler(&buf, nil), requestID).WithGroup("outer").(*slogvars.Handler)
	require.NoError(t, contextvars.New().Run(func() error {
		requestID.Set("r-2")
		slog.New(inner.TopLevel()).WithGroup("empty").Info("m")
		return nil
	}))
	var m map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &m))
	assert.Equal(t, map[string]any{"request_id": "r-2"}, m["outer"])
	assert.Nil(t, (*slogvars.Handler)(nil).TopLevel())
}

// TestHandler_contextRule checks the rule of contextvars.LookupContext in
// the places a new Go service meets it: code sees the context it runs in,
// and the Context a context.Context carries only where it runs in none.
func TestHandler_contextRule(t *testing.T) {
	task := contextvars.NewVar[string]("task")
	var buf syncBuffer
	logger := slog.New(slogvars.NewHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: dropTime}), requestID, user, task))

	// A request's context, as the httpvars middleware makes it and puts it
	// in r.Context().
	req := contextvars.New()
	require.NoError(t, req.Run(func() error { requestID.Set("r-1"); user.Set("alice"); return nil }))
	reqCtx := contextvars.WithContext(context.Background(), req)

	t.Run("errgroup task through WrapErr", func(t *testing.T) {
		buf.Reset()
		require.NoError(t, req.Copy().Run(func() error { // the request's goroutine
			g, gctx := errgroup.WithContext(reqCtx)
			for _, name := range []string{"stock", "price"} {
				g.Go(contextvars.WrapErr(func() error {
					defer task.Set(name).Reset()
					logger.InfoContext(gctx, "with gctx")
					logger.Info("without")
					return nil
				}))
			}
			return g.Wait()
		}))
		lines := buf.lines(t)
		require.Len(t, lines, 4)
		tasks := map[string]int{}
		for _, m := range lines {
			assert.Equal(t, "r-1", m["request_id"], "the request's vars reach the task: %v", m)
			tasks[fmt.Sprint(m["task"])]++
		}
		assert.Equal(t, map[string]int{"stock": 2, "price": 2}, tasks,
			"each task's own var, in its InfoContext(gctx) lines as in its Info lines")
	})
	t.Run("plain goroutine given only ctx", func(t *testing.T) {
		buf.Reset()
		done := make(chan struct{})
		go func() { defer close(done); logger.InfoContext(reqCtx, "callback") }()
		<-done
		m := buf.lines(t)[0]
		assert.Equal(t, "r-1", m["request_id"], "it runs in none: the ctx's Context")
		assert.Equal(t, "alice", m["user"])
	})
	t.Run("http.TimeoutHandler's goroutine", func(t *testing.T) {
		buf.Reset()
		h := httpvars.Handler(http.TimeoutHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			logger.InfoContext(r.Context(), "inside TimeoutHandler")
		}), time.Minute, "timeout"))
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requestID.Set(r.Header.Get("X-Request-Id")) // an id middleware outside httpvars
			h.ServeHTTP(w, r)
		}))
		defer srv.Close()
		req, err := http.NewRequest("GET", srv.URL, nil)
		require.NoError(t, err)
		req.Header.Set("X-Request-Id", "r-9")
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		srv.Client().CloseIdleConnections()
		m := buf.lines(t)[0]
		assert.Equal(t, "r-9", m["request_id"], "TimeoutHandler's goroutine runs in none: r.Context()'s Context")
	})
	t.Run("goroutine in a Run, handed another request's ctx", func(t *testing.T) {
		buf.Reset()
		require.NoError(t, contextvars.New().Run(func() error {
			requestID.Set("batcher")
			logger.InfoContext(reqCtx, "batch")
			return nil
		}))
		m := buf.lines(t)[0]
		assert.Equal(t, "batcher", m["request_id"], "the context it runs in wins")
		assert.NotContains(t, m, "user", "nothing of the other request's")
	})
}

// syncBuffer is a bytes.Buffer for log lines written from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Reset()
}

// lines returns the JSON log lines written so far, decoded.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var ms []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(b.buf.Bytes()), []byte{'\n'}) {
		var m map[string]any
		require.NoError(t, json.Unmarshal(line, &m), "%s", line)
		ms = append(ms, m)
	}
	return ms
}

func TestNewHandler_nil(t *testing.T) {
	assert.PanicsWithError(t, "contextvars: slogvars.NewHandler: nil slog.Handler", func() { slogvars.NewHandler(nil) })
	var nilVar *contextvars.Var[int]
	assert.PanicsWithError(t, "contextvars: slogvars.NewHandler: nil var", func() {
		slogvars.NewHandler(slog.NewJSONHandler(io.Discard, nil), nilVar)
	})
	assert.PanicsWithError(t, "contextvars: slogvars.NewHandler: nil var", func() {
		slogvars.NewHandler(slog.NewJSONHandler(io.Discard, nil), nil)
	})
	// A zero Var would log under an empty key; two vars of one name under
	// one key twice.
	assert.PanicsWithError(t, "contextvars: slogvars.NewHandler: a var with an empty name; name it with contextvars.NewVar", func() {
		slogvars.NewHandler(slog.NewJSONHandler(io.Discard, nil), new(contextvars.Var[int]))
	})
	assert.PanicsWithError(t, `contextvars: slogvars.NewHandler: two vars named "user"`, func() {
		slogvars.NewHandler(slog.NewJSONHandler(io.Discard, nil), user, contextvars.NewVar[int]("user"))
	})
}

// BenchmarkHandler logs one record through the bare JSON handler and
// through a Handler with 3 vars, none or all of them set.
func BenchmarkHandler(b *testing.B) {
	bare := slog.NewJSONHandler(io.Discard, nil)
	cases := []struct {
		name string
		h    slog.Handler
		set  bool
	}{
		{"handler=json", bare, false},
		{"handler=slogvars/set=0", slogvars.NewHandler(bare, requestID, user, attempt), false},
		{"handler=slogvars/set=3", slogvars.NewHandler(bare, requestID, user, attempt), true},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			logger := slog.New(tc.h)
			_ = contextvars.New().Run(func() error {
				if tc.set {
					requestID.Set("r-42")
					user.Set("alice")
					attempt.Set(2)
				}
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					logger.InfoContext(ctx, "served", "status", 200)
				}
				return nil
			})
		})
	}
}

// Example shows the handler adding a request's vars to a log line.
func Example() {
	requestID := contextvars.NewVar[string]("request_id")
	h := slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: dropTime})
	logger := slog.New(slogvars.NewHandler(h, requestID))
	_ = contextvars.New().Run(func() error {
		requestID.Set("r-42")
		logger.Info("served", "status", 200)
		return nil
	})
	// Output: {"level":"INFO","msg":"served","status":200,"request_id":"r-42"}
}

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// TestHandler_topLevelRedactedWithGroup: a ReplaceAttr that redacts a
// key (a password) empties a group given to With inside a WithGroup. Both
// handlers must log valid JSON, with ReplaceAttr seeing the record's attrs
// under their own group path. (Session-11 third review: a first TopLevel,
// which nested the With attrs and the record's in one slog.GroupValue, met
// log/slog's handling of a group left empty, which erases the group's text
// but does not close it.)
func TestHandler_topLevelRedactedWithGroup(t *testing.T) {
	var paths []string
	redact := &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if a.Key == "status" {
			paths = append(paths, slogGroupsPath(groups))
		}
		if a.Key == slog.TimeKey || a.Key == "password" {
			return slog.Attr{}
		}
		return a
	}}
	for _, top := range []bool{false, true} {
		var buf bytes.Buffer
		paths = nil
		h := slogvars.NewHandler(slog.NewJSONHandler(&buf, redact), requestID)
		if top {
			h = h.TopLevel()
		}
		require.NoError(t, contextvars.New().Run(func() error {
			requestID.Set("r-1")
			slog.New(h).WithGroup("req").
				With("method", "GET", slog.Group("auth", "password", "hunter2")).
				Info("m", "status", 200)
			return nil
		}))
		assert.Truef(t, json.Valid(buf.Bytes()), "TopLevel=%v: not JSON: %s", top, buf.String())
		assert.Equalf(t, []string{"req"}, paths, "TopLevel=%v: ReplaceAttr's groups for status", top)
	}
}

func slogGroupsPath(groups []string) string {
	s := ""
	for i, g := range groups {
		if i > 0 {
			s += "."
		}
		s += g
	}
	return s
}

// TestHandler_inlineGroupKeyOnce: the Handler doc promises that an
// attribute the code logs itself (on the record, or given to WithAttrs
// since the last WithGroup) keeps a var of the same name out, "so that no
// line has one key twice". An inline group (slog.Group with an empty key),
// whose attributes every slog handler puts at the level of the group, is
// looked into: request_id appears once on the line, with the plain
// Handler and with TopLevel alike. (Session-11 third review.)
func TestHandler_inlineGroupKeyOnce(t *testing.T) {
	for _, top := range []bool{false, true} {
		for _, how := range []string{"record", "WithAttrs"} {
			var buf bytes.Buffer
			h := slogvars.NewHandler(slog.NewJSONHandler(&buf, nil), requestID)
			if top {
				h = h.TopLevel()
			}
			require.NoError(t, contextvars.New().Run(func() error {
				requestID.Set("r-1")
				inline := slog.Group("", "request_id", "mine")
				if how == "record" {
					slog.New(h).Info("m", inline)
				} else {
					slog.New(h).With(inline).Info("m")
				}
				return nil
			}))
			assert.Equalf(t, 1, bytes.Count(buf.Bytes(), []byte(`"request_id"`)),
				"TopLevel=%v, %s: %s", top, how, buf.String())
		}
	}
}

// TestHandler_topLevelVarNamedLikeGroup: a TopLevel Handler puts the vars
// beside the outermost group the logger opened; a var named like that
// group (user, and logger.WithGroup("user")) gives the line the key twice,
// {"user":"alice","user":{"id":7}}, where the plain Handler gives
// {"user":{"id":7,"user":"alice"}}: TopLevel leaves such a var out, so that
// no line has one key twice. (Session-11 third review.)
func TestHandler_topLevelVarNamedLikeGroup(t *testing.T) {
	for _, top := range []bool{false, true} {
		var buf bytes.Buffer
		h := slogvars.NewHandler(slog.NewJSONHandler(&buf, nil), user)
		if top {
			h = h.TopLevel()
		}
		require.NoError(t, contextvars.New().Run(func() error {
			user.Set("alice")
			slog.New(h).WithGroup("user").Info("m", "id", 7)
			return nil
		}))
		assert.Equalf(t, 1, topLevelKeyCount(t, buf.Bytes(), "user"), "TopLevel=%v: %s", top, buf.String())
	}
}

// topLevelKeyCount counts the members named key of the JSON object line.
func topLevelKeyCount(t *testing.T, line []byte, key string) int {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	_, err := dec.Token() // {
	require.NoError(t, err)
	n := 0
	for dec.More() {
		k, err := dec.Token()
		require.NoError(t, err)
		if k == key {
			n++
		}
		var skip json.RawMessage
		require.NoError(t, dec.Decode(&skip))
	}
	return n
}

// optionalFields is a LogValuer that logs its fields that are set, as an
// empty Attr each one that is not: with none set, a group of empty attrs.
type optionalFields struct{ name string }

func (o optionalFields) LogValue() slog.Value {
	a := slog.Attr{}
	if o.name != "" {
		a = slog.String("name", o.name)
	}
	return slog.GroupValue(a)
}

// TestHandler_topLevelWithGroupOfEmptyAttrs: the same fault as
// TestHandler_topLevelRedactedWithGroup with no ReplaceAttr at all: a
// value given to With inside a WithGroup that resolves to a group of
// empty attrs leaves the record's attrs nested in that group (TextHandler:
// req.opts.status=200, where the plain Handler writes req.status=200).
func TestHandler_topLevelWithGroupOfEmptyAttrs(t *testing.T) {
	for _, top := range []bool{false, true} {
		var buf bytes.Buffer
		h := slogvars.NewHandler(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		}}), requestID)
		if top {
			h = h.TopLevel()
		}
		slog.New(h).WithGroup("req").With("opts", optionalFields{}).Info("m", "status", 200)
		assert.Equalf(t, "level=INFO msg=m req.status=200\n", buf.String(), "TopLevel=%v", top)
	}
}

// countingValuer is a LogValuer whose value counts its LogValue calls.
type countingValuer struct{ n *int }

func (v countingValuer) LogValue() slog.Value { *v.n++; return slog.IntValue(*v.n) }

// TestHandler_topLevelResolvesWithAttrsOnce: log/slog's handlers
// resolve a LogValuer given to WithAttrs (logger.With) once, when With is
// called, so every line of that logger shows the value of then. A TopLevel
// Handler that has opened a group hands the attr to the next handler's
// WithAttrs again for every record that adds a var: resolved once, at
// With, so every line says "snap":1, as without a var set or without
// TopLevel. (Session-11 fourth review: it was resolved anew per record.)
func TestHandler_topLevelResolvesWithAttrsOnce(t *testing.T) {
	for _, top := range []bool{false, true} {
		var buf bytes.Buffer
		n := 0
		h := slogvars.NewHandler(slog.NewJSONHandler(&buf, nil), requestID)
		if top {
			h = h.TopLevel()
		}
		logger := slog.New(h).WithGroup("g").With("snap", countingValuer{&n})
		require.NoError(t, contextvars.New().Run(func() error {
			requestID.Set("r-1")
			logger.Info("one")
			logger.Info("two")
			return nil
		}))
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		require.Len(t, lines, 2)
		for _, l := range lines {
			assert.Containsf(t, l, `"snap":1`, "TopLevel=%v: the With value resolved at With, as slog does: %s", top, l)
		}
	}
}

// TestHandler_topLevelWithAttrsCallByCall: a TopLevel Handler keeps
// the attrs of all the With calls after a group in one slice and replays
// them as one WithAttrs call. log/slog's handlers do not treat one call
// as two: With(slog.Group("e")) (an empty group, ignored) then
// With(slog.Group("", "password", "p")) under a ReplaceAttr that removes
// password writes no "g1", but the two as one WithAttrs call write
// "g1":{}. So the same logger writes "g1":{} when a var is set and nothing
// when none is: the line differs from log/slog's by more than the var.
func TestHandler_topLevelWithAttrsCallByCall(t *testing.T) {
	redact := &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if a.Key == "password" || (a.Key == slog.TimeKey && len(groups) == 0) {
			return slog.Attr{}
		}
		return a
	}}
	line := func(set bool) string {
		var buf bytes.Buffer
		h := slogvars.NewHandler(slog.NewJSONHandler(&buf, redact), requestID).TopLevel()
		logger := slog.New(h).WithGroup("g1").With(slog.Group("e")).With(slog.Group("", "password", "p"))
		require.NoError(t, contextvars.New().Run(func() error {
			if set {
				requestID.Set("r-1")
			}
			logger.Info("m")
			return nil
		}))
		return strings.TrimSpace(buf.String())
	}
	assert.Equal(t, `{"level":"INFO","msg":"m"}`, line(false))
	assert.Equal(t, `{"level":"INFO","msg":"m","request_id":"r-1"}`, line(true), "as log/slog writes the logger's line, plus the var")
}

// BenchmarkHandler_topLevelGrouped measures one log call through a logger
// WithGroup("db").With(2 attrs) over the JSON handler (io.Discard):
// plain slog, the Handler, and the TopLevel Handler, each with the var
// unset and set.
func BenchmarkHandler_topLevelGrouped(b *testing.B) {
	mk := func(kind string) *slog.Logger {
		j := slog.NewJSONHandler(discard{}, nil)
		var h slog.Handler = j
		switch kind {
		case "handler":
			h = slogvars.NewHandler(j, requestID)
		case "toplevel":
			h = slogvars.NewHandler(j, requestID).TopLevel()
		}
		return slog.New(h).WithGroup("db").With("table", "users", "shard", 3)
	}
	for _, kind := range []string{"slog", "handler", "toplevel"} {
		for _, set := range []bool{false, true} {
			if kind == "slog" && set {
				continue
			}
			logger := mk(kind)
			name := kind + "/unset"
			if set {
				name = kind + "/set"
			}
			b.Run(name, func(b *testing.B) {
				c := contextvars.New()
				if set {
					_ = c.Run(func() error { requestID.Set("r-1"); return nil })
				}
				b.ReportAllocs()
				_ = c.Run(func() error {
					for b.Loop() {
						logger.Info("query", "rows", 3)
					}
					return nil
				})
			})
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
