package slogvars_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-contextvars/contextvars"
	"github.com/go-contextvars/contextvars/slogvars"
)

func reviewDecode(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var ms []map[string]any
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal(line, &m), string(line))
		ms = append(ms, m)
	}
	return ms
}

// TestSeams_everyPath: a var set in a Run reaches the line by every way of
// logging on that goroutine.
func TestSeams_everyPath(t *testing.T) {
	var buf bytes.Buffer
	h := slogvars.NewHandler(slog.NewJSONHandler(&buf, nil), requestID, user)
	prev, prevOut, prevFlags := slog.Default(), log.Writer(), log.Flags()
	slog.SetDefault(slog.New(h))
	defer func() { // package log's output too, which SetDefault redirects
		slog.SetDefault(prev)
		log.SetOutput(prevOut)
		log.SetFlags(prevFlags)
	}()
	require.NoError(t, contextvars.New().Run(func() error {
		requestID.Set("r-9")
		slog.Info("plain")
		slog.InfoContext(context.Background(), "ctx")
		slog.Default().With("a", 1).Info("with")
		log.Print("std log") // through slog.SetDefault's bridge
		slog.NewLogLogger(h, slog.LevelInfo).Print("loglogger")
		slog.New(h.WithAttrs([]slog.Attr{slog.Int("x", 1)})).Info("withattrs")
		return nil
	}))
	lines := reviewDecode(t, buf.Bytes())
	require.Len(t, lines, 6)
	for _, m := range lines {
		assert.Equal(t, "r-9", m["request_id"], "%v", m)
	}
}

// TestSeams_recordAttrSameKey: a record attr with the name of a var.
func TestSeams_recordAttrSameKey(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slogvars.NewHandler(slog.NewJSONHandler(&buf, nil), requestID))
	require.NoError(t, contextvars.New().Run(func() error {
		requestID.Set("r-1")
		logger.Info("x", "request_id", "explicit")
		return nil
	}))
	assert.Equal(t, 1, strings.Count(buf.String(), `"request_id"`), "duplicate key in one JSON object: %s", buf.String())
}

// TestSeams_withAttrsSameKey: an attribute given to With wins over a var
// of its name in the same group; in a group opened after it, the var is
// added there.
func TestSeams_withAttrsSameKey(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slogvars.NewHandler(slog.NewJSONHandler(&buf, nil), requestID))
	require.NoError(t, contextvars.New().Run(func() error {
		requestID.Set("r-1")
		logger.With("request_id", "explicit").Info("x")
		logger.With("request_id", "explicit").WithGroup("g").Info("y")
		return nil
	}))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2)
	assert.Equal(t, 1, strings.Count(lines[0], `"request_id"`), "duplicate key: %s", lines[0])
	assert.Contains(t, lines[0], `"request_id":"explicit"`)
	assert.Contains(t, lines[1], `"g":{"request_id":"r-1"}`, "the var in the group: %s", lines[1])
}

// TestSeams_zeroHandler: the zero value of an exported type.
func TestSeams_zeroHandler(t *testing.T) {
	var h slogvars.Handler
	func() {
		defer func() {
			r := recover()
			if r != nil {
				err, _ := r.(error)
				if err == nil || !strings.HasPrefix(err.Error(), "contextvars: ") {
					t.Errorf("zero Handler: panic %v", r)
				}
			}
		}()
		_ = h.Enabled(context.Background(), slog.LevelInfo)
	}()
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("zero Handler Handle panicked: %v (want an error starting contextvars:)", r)
			}
		}()
		err := h.Handle(context.Background(), slog.Record{})
		if err == nil || !strings.HasPrefix(err.Error(), "contextvars: ") {
			t.Errorf("zero Handler Handle: %v", err)
		}
	}()
}

// wrapper is a handler that wraps another synchronously (a sampler, a
// redactor), in front of slogvars.
type wrapper struct{ next slog.Handler }

func (w wrapper) Enabled(ctx context.Context, l slog.Level) bool { return w.next.Enabled(ctx, l) }
func (w wrapper) Handle(ctx context.Context, r slog.Record) error {
	return w.next.Handle(context.WithValue(ctx, struct{ k int }{1}, 1), r)
}
func (w wrapper) WithAttrs(a []slog.Attr) slog.Handler { return wrapper{w.next.WithAttrs(a)} }
func (w wrapper) WithGroup(n string) slog.Handler      { return wrapper{w.next.WithGroup(n)} }

// TestSeams_wrappedHandler: slogvars behind and in front of other
// handlers, from a goroutine in a Run and from a plain goroutine with the
// request's ctx.
func TestSeams_wrappedHandler(t *testing.T) {
	var buf bytes.Buffer
	inner := slogvars.NewHandler(slog.NewJSONHandler(&buf, nil), requestID)
	logger := slog.New(wrapper{inner}).With("svc", "a")
	c := contextvars.New()
	ctx := contextvars.WithContext(context.Background(), c)
	require.NoError(t, c.Run(func() error {
		requestID.Set("r-5")
		logger.Info("in run")
		done := make(chan struct{})
		go func() { defer close(done); logger.InfoContext(ctx, "plain goroutine") }()
		<-done
		return nil
	}))
	lines := reviewDecode(t, buf.Bytes())
	require.Len(t, lines, 2)
	for _, m := range lines {
		assert.Equal(t, "r-5", m["request_id"], "%v", m)
	}
}
