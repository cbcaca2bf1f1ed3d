package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/go-contextvars/contextvars"
	"github.com/go-contextvars/contextvars/baggagevars"
	"github.com/go-contextvars/contextvars/httpvars"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	// tenant and user are chosen to travel as baggage.
	tenant = contextvars.NewVar[string]("tenant")
	user   = contextvars.NewVar[string]("user")
	// note is not chosen: it never leaves its process.
	note = contextvars.NewVar[string]("note")
)

// seen is what a handler saw, sent back as JSON.
type seen struct {
	Before    string // note before the handler set it: "" unless a request leaked
	Tenant    string
	User      string
	Note      string
	Carried   bool   // r.Context() carries a contextvars.Context
	Baggage   string // the OpenTelemetry baggage of r.Context(), sorted
	TraceID   string // of the span in r.Context()
	SpanID    string
	Recording bool  // that span is recording: a local span, otelhttp's
	Next      *seen // what the next service saw
}

// look reports what the handler of r sees.
func look(r *http.Request) *seen {
	var s seen
	s.Before, _ = note.Get()
	s.Tenant, _ = tenant.Get()
	s.User, _ = user.Get()
	_, s.Carried = contextvars.FromContext(r.Context())
	var members []string
	for _, m := range baggage.FromContext(r.Context()).Members() {
		members = append(members, m.Key()+"="+m.Value())
	}
	slices.Sort(members) // the baggage's order is unspecified
	s.Baggage = strings.Join(members, ",")
	span := trace.SpanFromContext(r.Context())
	if sc := span.SpanContext(); sc.IsValid() {
		s.TraceID, s.SpanID = sc.TraceID().String(), sc.SpanID().String()
	}
	s.Recording = span.IsRecording()
	return &s
}

// get sends req with client and decodes what the service saw.
func get(client *http.Client, req *http.Request) (*seen, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, body)
	}
	var s seen
	return &s, json.Unmarshal(body, &s)
}

// A stack puts otelhttp's handler (otel) and ours (httpvars.Handler around
// Propagator.Handler) around h, in some order.
type stack func(h http.Handler, otel func(http.Handler) http.Handler, p *baggagevars.Propagator) http.Handler

var stacks = map[string]stack{
	"otelhttpOutside": func(h http.Handler, otel func(http.Handler) http.Handler, p *baggagevars.Propagator) http.Handler {
		return otel(httpvars.Handler(p.Handler(h)))
	},
	"otelhttpInside": func(h http.Handler, otel func(http.Handler) http.Handler, p *baggagevars.Propagator) http.Handler {
		return httpvars.Handler(p.Handler(otel(h)))
	},
	"otelhttpBetween": func(h http.Handler, otel func(http.Handler) http.Handler, p *baggagevars.Propagator) http.Handler {
		return httpvars.Handler(otel(p.Handler(h)))
	},
}

// A transport puts otelhttp's transport and ours around base, in some
// order.
type transport func(base http.RoundTripper, tp trace.TracerProvider, prop propagation.TextMapPropagator, p *baggagevars.Propagator) http.RoundTripper

// oursInside is the order the README recommends: otelhttp's transport
// injects first, and ours adds the vars to the baggage header it wrote.
func oursInside(base http.RoundTripper, tp trace.TracerProvider, prop propagation.TextMapPropagator, p *baggagevars.Propagator) http.RoundTripper {
	return otelhttp.NewTransport(p.Transport(base), otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(prop))
}

// oursOutside: propagation.Baggage writes the header anew from the
// context's OpenTelemetry baggage, to which our transport adds the vars.
func oursOutside(base http.RoundTripper, tp trace.TracerProvider, prop propagation.TextMapPropagator, p *baggagevars.Propagator) http.RoundTripper {
	return p.Transport(otelhttp.NewTransport(base, otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(prop)))
}

// TestOtelhttp: a caller calls service A, whose handler sets a var and
// calls service B; both services have otelhttp's handler and ours, in each
// order, and call out through otelhttp's transport and ours. Each handler
// gets otelhttp's server span, recording and a child of the caller's client
// span, one trace throughout, and the chosen vars: the caller's in A,
// the caller's and A's in B, never A's unchosen note.
func TestOtelhttp(t *testing.T) {
	p := baggagevars.New(baggagevars.String(tenant, "tenant"), baggagevars.String(user, "user"))
	otelProps := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	withOurs := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}, p)
	transports := []struct {
		name      string
		transport transport
		prop      propagation.TextMapPropagator
	}{
		{"oursInside/otelPropagators", oursInside, otelProps},
		{"oursInside/withOurs", oursInside, withOurs},
		{"oursOutside/otelPropagators", oursOutside, otelProps},
		{"oursOutside/withOurs", oursOutside, withOurs},
	}
	for stackName, stack := range stacks {
		for _, tr := range transports {
			t.Run(stackName+"/"+tr.name, func(t *testing.T) {
				testOtelhttp(t, p, stack, tr.transport, tr.prop)
			})
		}
	}
}

func testOtelhttp(t *testing.T, p *baggagevars.Propagator, stack stack, tr transport, prop propagation.TextMapPropagator) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	otel := func(name string) func(http.Handler) http.Handler {
		return func(h http.Handler) http.Handler {
			return otelhttp.NewHandler(h, name, otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(prop))
		}
	}
	newClient := func() *http.Client {
		base := &http.Transport{}
		t.Cleanup(base.CloseIdleConnections)
		return &http.Client{Transport: tr(base, tp, prop, p)}
	}

	b := httptest.NewServer(stack(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := look(r)
		note.Set("B's note") // seen by no later request
		_ = json.NewEncoder(w).Encode(got)
	}), otel("B"), p))
	defer b.Close()
	toB := newClient()
	a := httptest.NewServer(stack(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := look(r)
		user.Set(got.User + "+A") // set in A: sent on to B
		note.Set("A's note")      // not chosen: stays in A
		req, err := http.NewRequestWithContext(r.Context(), "GET", b.URL, nil)
		if err == nil {
			got.Next, err = get(toB, req)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		_ = json.NewEncoder(w).Encode(got)
	}), otel("A"), p))
	defer a.Close()
	toA := newClient()

	// The caller: a root span, OpenTelemetry baggage of its own, and the
	// chosen vars, for two requests in a row (one keep-alive connection).
	m, err := baggage.NewMember("other", "x")
	require.NoError(t, err)
	bag, err := baggage.New(m)
	require.NoError(t, err)
	ctx, root := tp.Tracer("test").Start(baggage.ContextWithBaggage(context.Background(), bag), "caller")
	var got []*seen
	for i := range 2 {
		require.NoError(t, contextvars.New().Run(func() error {
			tenant.Set("acme")
			user.Set(fmt.Sprint("alice", i))
			req, err := http.NewRequestWithContext(ctx, "GET", a.URL, nil)
			if err != nil {
				return err
			}
			s, err := get(toA, req)
			got = append(got, s)
			return err
		}))
	}
	root.End()

	require.Eventually(t, func() bool { return len(rec.Ended()) == 9 }, 10*time.Second, time.Millisecond,
		"spans ended: the root, and per request: caller→A, A, A→B, B")
	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		spans[s.SpanContext().SpanID().String()] = s
	}
	// parentOf returns the span ID of the parent of the span with ID id,
	// if that is a client span.
	parentOf := func(id string) string {
		s, ok := spans[id]
		if !assert.True(t, ok, "span %s was recorded", id) {
			return ""
		}
		assert.Equal(t, trace.SpanKindServer, s.SpanKind(), "span %s is a server span", s.Name())
		client, ok := spans[s.Parent().SpanID().String()]
		if !assert.True(t, ok, "the parent of %s was recorded", s.Name()) {
			return ""
		}
		assert.Equal(t, trace.SpanKindClient, client.SpanKind(), "the parent of %s is a client span", s.Name())
		return client.Parent().SpanID().String()
	}
	for i, inA := range got {
		usr := fmt.Sprint("alice", i)
		want := &seen{Tenant: "acme", User: usr, Carried: true, Baggage: "other=x,tenant=acme,user=" + usr,
			TraceID: root.SpanContext().TraceID().String(), SpanID: inA.SpanID, Recording: true}
		wantB := &seen{Tenant: "acme", User: usr + "+A", Carried: true, Baggage: "other=x,tenant=acme,user=" + usr + "+A",
			TraceID: root.SpanContext().TraceID().String(), SpanID: inA.Next.SpanID, Recording: true}
		inB := inA.Next
		inA.Next = nil
		assert.Equal(t, want, inA, "request %d in A", i)
		assert.Equal(t, wantB, inB, "request %d in B", i)
		assert.Equal(t, root.SpanContext().SpanID().String(), parentOf(inA.SpanID), "A's span: caller → client span → A")
		assert.Equal(t, inA.SpanID, parentOf(inB.SpanID), "B's span: A → client span → B")
	}
}
