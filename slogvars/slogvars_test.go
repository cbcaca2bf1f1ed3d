package slogvars_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"testing"
	"testing/slogtest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-contextvars/contextvars"
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
	var buf bytes.Buffer
	h := slogvars.NewHandler(slog.NewJSONHandler(&buf, nil), requestID, user, attempt)
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

		// A context.Context that carries a Context wins over the goroutine's.
		other := contextvars.New()
		require.NoError(t, other.Run(func() error { requestID.Set("r-2"); attempt.Set(3); return nil }))
		m = logLine(t, contextvars.WithContext(context.Background(), other), nil)
		assert.Equal(t, "r-2", m["request_id"], "from the record's context.Context")
		assert.Equal(t, float64(3), m["attempt"])
		assert.NotContains(t, m, "user", "not set in the carried Context")

		// Groups qualify the added attrs as they do the record's.
		m = logLine(t, context.Background(), func(l *slog.Logger) *slog.Logger { return l.With("svc", "billing").WithGroup("req") })
		assert.Equal(t, "billing", m["svc"])
		assert.Equal(t, map[string]any{"request_id": "r-1", "user": "alice", "status": float64(200)}, m["req"])
		return nil
	}))
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
