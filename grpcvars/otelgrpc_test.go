package grpcvars_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/go-contextvars/contextvars"
	"github.com/go-contextvars/contextvars/baggagevars"
)

// lookSpan records the span of ctx in s.
func lookSpan(ctx context.Context, s *seen) {
	span := trace.SpanFromContext(ctx)
	if sc := span.SpanContext(); sc.IsValid() {
		s.TraceID, s.SpanID = sc.TraceID().String(), sc.SpanID().String()
	}
	s.Recording = span.IsRecording()
}

// otelOptions returns otelgrpc's server and client stats handlers for tp,
// with prop as their propagator, as gRPC options.
func otelOptions(tp trace.TracerProvider, prop propagation.TextMapPropagator) ([]grpc.ServerOption, []grpc.DialOption) {
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(prop)))},
		[]grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(prop)))}
}

// otelPropagators are the propagators otelgrpc may be given: OpenTelemetry's
// usual pair (which writes the baggage entry from the context's baggage,
// over what grpcvars wrote), or that pair and ours.
func otelPropagators(p *baggagevars.Propagator) map[string]propagation.TextMapPropagator {
	return map[string]propagation.TextMapPropagator{
		"otelPropagators": propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		"withOurs":        propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}, p),
	}
}

// waitSpans waits until rec has ended n spans and returns them by kind; a
// server span ends after the client has its response.
func waitSpans(t *testing.T, rec *tracetest.SpanRecorder, n int) map[trace.SpanKind][]sdktrace.ReadOnlySpan {
	t.Helper()
	require.Eventually(t, func() bool { return len(rec.Ended()) >= n }, 10*time.Second, time.Millisecond, "%d spans ended", n)
	byKind := map[trace.SpanKind][]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		byKind[s.SpanKind()] = append(byKind[s.SpanKind()], s)
	}
	return byKind
}

// callerContext returns a context with a root span and OpenTelemetry
// baggage (other=x) of its own, as in a service that received a call.
func callerContext(t *testing.T, tp trace.TracerProvider) (context.Context, trace.Span) {
	t.Helper()
	m, err := baggage.NewMember("other", "x")
	require.NoError(t, err)
	b, err := baggage.New(m)
	require.NoError(t, err)
	ctx, span := tp.Tracer("test").Start(baggage.ContextWithBaggage(context.Background(), b), "caller")
	return ctx, span
}

// TestOtelgrpc_sameServer: with otelgrpc's stats handlers and grpcvars'
// interceptors on one server and one client, a unary and a streaming
// handler each get both otelgrpc's server span (recording, child of the
// client span) and the caller's vars, whatever propagators otelgrpc uses.
func TestOtelgrpc_sameServer(t *testing.T) {
	p := newPropagator()
	for name, prop := range otelPropagators(p) {
		t.Run(name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			srvOpts, dialOpts := otelOptions(tp, prop)
			client := testpb.NewTestServiceClient(serve(t, p, &testService{}, srvOpts, dialOpts))

			ctx, root := callerContext(t, tp)
			var unary, streamed *seen
			require.NoError(t, contextvars.New().Run(func() error {
				tenant.Set("acme")
				user.Set("alice")
				resp, err := client.UnaryCall(ctx, request("r-1"))
				if err != nil {
					return err
				}
				unary = decode(resp.GetPayload().GetBody())
				stream, err := client.FullDuplexCall(ctx)
				if err != nil {
					return err
				}
				if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("r-2")}}); err != nil {
					return err
				}
				sresp, err := stream.Recv()
				if err != nil {
					return err
				}
				streamed = decode(sresp.GetPayload().GetBody())
				if err := stream.CloseSend(); err != nil {
					return err
				}
				_, _ = stream.Recv() // io.EOF: the call ends
				return nil
			}))
			root.End()

			spans := waitSpans(t, rec, 5) // root, 2 client, 2 server
			require.Len(t, spans[trace.SpanKindServer], 2)
			require.Len(t, spans[trace.SpanKindClient], 2)
			for _, got := range []*seen{unary, streamed} {
				assert.Equal(t, "acme", got.Tenant, "tenant in %s", got.RequestID)
				assert.Equal(t, "alice", got.User, "user in %s", got.RequestID)
				assert.Equal(t, "other=x,tenant=acme,user=alice", got.Baggage, "OpenTelemetry baggage in %s", got.RequestID)
				assert.True(t, got.Recording, "a recording span in %s", got.RequestID)
				assert.Equal(t, root.SpanContext().TraceID().String(), got.TraceID, "trace of %s", got.RequestID)
				server := spanByID(spans[trace.SpanKindServer], got.SpanID)
				if assert.NotNil(t, server, "the span in %s's handler is otelgrpc's server span", got.RequestID) {
					client := spanByID(spans[trace.SpanKindClient], server.Parent().SpanID().String())
					if assert.NotNil(t, client, "the server span's parent is a client span") {
						assert.Equal(t, root.SpanContext().SpanID(), client.Parent().SpanID(), "the client span's parent is the caller's")
					}
				}
			}
		})
	}
}

// TestOtelgrpc_nextService: a caller calls service A, whose handler sets a
// var and calls service B, all three instrumented with otelgrpc and
// grpcvars: B's handler gets the trace (B's server span is a grandchild of
// A's) and the vars, the caller's and A's, but not A's unchosen note.
func TestOtelgrpc_nextService(t *testing.T) {
	p := newPropagator()
	for name, prop := range otelPropagators(p) {
		t.Run(name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			srvOpts, dialOpts := otelOptions(tp, prop)
			toB := testpb.NewTestServiceClient(serve(t, p, &testService{}, srvOpts, dialOpts))
			toA := testpb.NewTestServiceClient(serve(t, p, &testService{next: toB}, srvOpts, dialOpts))

			ctx, root := callerContext(t, tp)
			var got *seen
			require.NoError(t, contextvars.New().Run(func() error {
				tenant.Set("acme")
				user.Set("alice")
				resp, err := toA.UnaryCall(ctx, request("r-1"))
				if err == nil {
					got = decode(resp.GetPayload().GetBody())
				}
				return err
			}))
			root.End()

			spans := waitSpans(t, rec, 5) // root, caller→A client, A server, A→B client, B server
			require.NotNil(t, got.Next, "A called B")
			b := got.Next
			assert.Equal(t, "next-r-1", b.RequestID)
			assert.Equal(t, "acme", b.Tenant, "tenant in B")
			assert.Equal(t, "alice+A", b.User, "user in B: A's value")
			assert.Empty(t, b.Note, "note in B: not chosen")
			assert.Equal(t, "other=x,tenant=acme,user=alice+A", b.Baggage, "OpenTelemetry baggage in B")
			assert.Empty(t, b.Before, "B's request_id before its handler set it")
			assert.True(t, b.Recording)
			assert.Equal(t, got.TraceID, b.TraceID, "one trace")

			bServer := spanByID(spans[trace.SpanKindServer], b.SpanID)
			require.NotNil(t, bServer, "the span in B's handler is B's server span")
			aClient := spanByID(spans[trace.SpanKindClient], bServer.Parent().SpanID().String())
			require.NotNil(t, aClient, "B's server span's parent is a client span")
			assert.Equal(t, got.SpanID, aClient.Parent().SpanID().String(), "that client span's parent is A's server span")
		})
	}
}

// spanByID returns the span of spans with span ID id, or nil.
func spanByID(spans []sdktrace.ReadOnlySpan, id string) sdktrace.ReadOnlySpan {
	for _, s := range spans {
		if s.SpanContext().SpanID().String() == id {
			return s
		}
	}
	return nil
}
