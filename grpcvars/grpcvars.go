// Package grpcvars does for gRPC what httpvars and baggagevars do for
// net/http: on a server, every call (unary or streaming) runs its handler in
// a contextvars.Context of its own, with the vars a [baggagevars.Propagator]
// chose set from the call's W3C baggage; on a client, those vars travel with
// every call in its outgoing metadata, as W3C baggage.
//
//	p := baggagevars.New(baggagevars.String(tenant, "tenant"))
//
//	srv := grpc.NewServer(
//		grpc.StatsHandler(otelgrpc.NewServerHandler()), // traces, if you want them
//		grpc.ChainUnaryInterceptor(grpcvars.UnaryServerInterceptor(p)),
//		grpc.ChainStreamInterceptor(grpcvars.StreamServerInterceptor(p)),
//	)
//
//	conn, err := grpc.NewClient(target,
//		grpc.WithStatsHandler(otelgrpc.NewClientHandler()),
//		grpc.WithChainUnaryInterceptor(grpcvars.UnaryClientInterceptor(p)),
//		grpc.WithChainStreamInterceptor(grpcvars.StreamClientInterceptor(p)),
//	)
//
// grpcvars is a module of its own, so that the contextvars module never
// requires gRPC; get it with
//
//	go get github.com/go-contextvars/contextvars/grpcvars
//
// # Server
//
// Each call runs in a new copy of the context that was current when the
// interceptor was made, with what the serving goroutine holds when the call
// arrives set over it (as in httpvars): values set at start-up are seen by
// every call, an interceptor chained before this one may set vars for the
// call outside any Run, and what one call sets is seen by no other (what
// the serving goroutine set outside any Run is dropped when the call ends). gRPC serves each call on a
// goroutine of its own, or, with grpc.NumStreamWorkers, on a pooled worker
// that serves one call after another: without a Run per call, a var set
// outside Run by one call would be seen by the next call on that worker.
// The handler is called inside that copy's Run, after the chosen vars found
// in the incoming metadata's baggage are set there (baggagevars.Apply),
// those of them that nothing set before: the caller's baggage never
// replaces a value an interceptor of this server set for the call. The
// call's context.Context — the ctx of a unary handler, ServerStream.Context
// of a streaming one — carries the copy (contextvars.FromContext), so
// goroutines the handler starts reach the call's vars with
// contextvars.RunFrom, and carries the extracted OpenTelemetry baggage
// (baggage.FromContext). Bad baggage never fails a call: the vars concerned
// stay unset and the Propagator counts the error (see baggagevars).
//
// # Client
//
// The chosen vars that are set go in the call's outgoing metadata under the
// key "baggage", merged with a baggage entry already there and with the
// OpenTelemetry baggage of the call's ctx; they are read by the package's
// rule (contextvars.LookupContext): the calling goroutine's current context
// if it has one — a unary call, and the creation of a stream, run on the
// caller's goroutine — or else the contextvars.Context that ctx carries.
//
// # Why interceptors, not a stats.Handler
//
// otelgrpc instruments gRPC with stats.Handlers (grpc.StatsHandler), no
// longer with interceptors: a stats handler sees every call, also those an
// interceptor rejects, and measures the whole call. But a stats handler only
// observes: TagRPC returns the call's context.Context before the handler
// runs, HandleRPC reports what happened, and neither calls the handler, so
// neither can make it run inside Context.Run — the one way to give a call a
// context of its own that is left on every way out, panic included. Only an
// interceptor calls the handler; so the server side is a pair of
// interceptors, and the client side is one too, to be installed the same
// way, chained with the application's own by grpc.ChainUnaryInterceptor,
// grpc.ChainStreamInterceptor and their grpc.WithChain… dial options.
//
// # With otelgrpc
//
// The interceptors take the [baggagevars.Propagator] itself, not the
// process's OpenTelemetry propagator (otel.GetTextMapPropagator): on a
// server, a stats handler runs before the interceptors, and extracting
// propagation.TraceContext again would replace otelgrpc's server span in the
// call's context with the remote parent it names. So keep trace context and
// OpenTelemetry baggage to otelgrpc, and the chosen vars to grpcvars.
//
// On a client, stats handlers run after the interceptors, and otelgrpc
// injects with its propagators: propagation.Baggage writes the baggage entry
// anew from the context's OpenTelemetry baggage whenever that is not empty —
// as in a server that calls another service, whose context holds the
// baggage it received. So when the context holds OpenTelemetry baggage, the
// client interceptors put the members they send into it too, and the vars
// arrive whatever otelgrpc's propagators are (TestOtelgrpc_sameServer,
// TestOtelgrpc_nextService).
package grpcvars

import (
	"context"
	"errors"
	"strings"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/go-contextvars/contextvars"
	"github.com/go-contextvars/contextvars/baggagevars"
)

// baggageKey is the metadata key of W3C baggage: the header name, which
// gRPC metadata keys carry in lower case.
const baggageKey = "baggage"

// UnaryServerInterceptor returns a grpc.UnaryServerInterceptor that runs
// each unary call's handler inside a new copy of the calling goroutine's
// current context, taken when UnaryServerInterceptor is called, with p's
// vars set from the call's incoming baggage; see the package doc.
//
// UnaryServerInterceptor panics if p is nil.
func UnaryServerInterceptor(p *baggagevars.Propagator) grpc.UnaryServerInterceptor {
	if p == nil {
		panic(errors.New("contextvars: grpcvars.UnaryServerInterceptor: nil *baggagevars.Propagator"))
	}
	base := contextvars.CopyContext() // never entered: each call runs in a copy
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		if ctx == nil || handler == nil {
			return nil, internalError("contextvars: grpcvars: unary server interceptor called with a nil context.Context or grpc.UnaryHandler")
		}
		if grpc.ServerTransportStreamFromContext(ctx) != nil {
			defer contextvars.DropImplicit() // see incoming
		}
		ctx, c := incoming(ctx, p, base)
		_ = c.Run(func() error { // c is new: Run cannot fail
			baggagevars.Apply(ctx)
			resp, err = handler(ctx, req)
			return nil
		})
		return resp, err
	}
}

// StreamServerInterceptor returns a grpc.StreamServerInterceptor that runs
// each streaming call's handler inside a new copy of the calling goroutine's
// current context, taken when StreamServerInterceptor is called, with p's
// vars set from the call's incoming baggage; the handler's
// ServerStream.Context carries the copy. See the package doc.
//
// StreamServerInterceptor panics if p is nil.
func StreamServerInterceptor(p *baggagevars.Propagator) grpc.StreamServerInterceptor {
	if p == nil {
		panic(errors.New("contextvars: grpcvars.StreamServerInterceptor: nil *baggagevars.Propagator"))
	}
	base := contextvars.CopyContext() // never entered: each call runs in a copy
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		if ss == nil || handler == nil {
			return internalError("contextvars: grpcvars: stream server interceptor called with a nil grpc.ServerStream or grpc.StreamHandler")
		}
		ctx := ss.Context()
		if ctx == nil {
			return internalError("contextvars: grpcvars: grpc.ServerStream with a nil context.Context")
		}
		if grpc.ServerTransportStreamFromContext(ctx) != nil {
			defer contextvars.DropImplicit() // see incoming
		}
		ctx, c := incoming(ctx, p, base)
		_ = c.Run(func() error { // c is new: Run cannot fail
			baggagevars.Apply(ctx)
			err = handler(srv, &serverStream{ServerStream: ss, ctx: ctx})
			return nil
		})
		return err
	}
}

// UnaryClientInterceptor returns a grpc.UnaryClientInterceptor that sends
// p's vars that are set with each unary call, in its outgoing metadata as
// W3C baggage; see the package doc.
//
// UnaryClientInterceptor panics if p is nil.
func UnaryClientInterceptor(p *baggagevars.Propagator) grpc.UnaryClientInterceptor {
	if p == nil {
		panic(errors.New("contextvars: grpcvars.UnaryClientInterceptor: nil *baggagevars.Propagator"))
	}
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if ctx == nil || invoker == nil {
			return internalError("contextvars: grpcvars: unary client interceptor called with a nil context.Context or grpc.UnaryInvoker")
		}
		return invoker(outgoing(ctx, p), method, req, reply, cc, opts...)
	}
}

// StreamClientInterceptor returns a grpc.StreamClientInterceptor that sends
// p's vars that are set, when a stream is created, with the stream's
// outgoing metadata as W3C baggage; see the package doc.
//
// StreamClientInterceptor panics if p is nil.
func StreamClientInterceptor(p *baggagevars.Propagator) grpc.StreamClientInterceptor {
	if p == nil {
		panic(errors.New("contextvars: grpcvars.StreamClientInterceptor: nil *baggagevars.Propagator"))
	}
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if ctx == nil || streamer == nil {
			return nil, internalError("contextvars: grpcvars: stream client interceptor called with a nil context.Context or grpc.Streamer")
		}
		return streamer(outgoing(ctx, p), desc, cc, method, opts...)
	}
}

// incoming returns a new copy of base, with the serving goroutine's current
// context over it, for a server call whose context is ctx, and ctx with p's
// extraction from the incoming metadata (for
// baggagevars.Apply, inside the copy's Run) and carrying the copy.
func incoming(ctx context.Context, p *baggagevars.Propagator, base *contextvars.Context) (context.Context, *contextvars.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	ctx = p.Extract(ctx, &carrier{md: md})
	// What interceptors chained before ours set on the serving goroutine
	// belongs to the call, over the base, as in httpvars; the interceptor
	// drops it when the call ends (on a real call: gRPC's stream worker
	// serves the next call on the same goroutine), or when the outermost
	// Run returns if an interceptor before ours runs the call in one.
	c := contextvars.Merge(base, contextvars.CopyContext())
	return contextvars.WithContext(ctx, c), c
}

// outgoing returns ctx with p's vars added to its outgoing metadata, and,
// if ctx holds OpenTelemetry baggage, to that baggage too (see the package
// doc: a stats handler's propagation.Baggage, which injects after us, writes
// the baggage entry from it). It returns ctx itself if no var is set.
func outgoing(ctx context.Context, p *baggagevars.Propagator) context.Context {
	md, _ := metadata.FromOutgoingContext(ctx)
	cr := &carrier{md: md}
	p.Inject(ctx, cr)
	if cr.added == nil {
		return ctx
	}
	// The metadata in ctx may be shared with other calls: change a copy.
	md = md.Copy()
	for k, v := range cr.added {
		md[k] = v
	}
	ctx = metadata.NewOutgoingContext(ctx, md)
	if baggage.FromContext(ctx).Len() > 0 {
		if b, err := baggage.Parse(strings.Join(cr.added[baggageKey], ",")); err == nil {
			ctx = baggage.ContextWithBaggage(ctx, b)
		}
	}
	return ctx
}

// A carrier is a propagation.TextMapCarrier (and propagation.ValuesGetter)
// over gRPC metadata that never changes the metadata it reads: Set puts its
// entries in added, which Get and Values read first.
type carrier struct {
	md    metadata.MD // read only: it may be shared with other calls
	added metadata.MD // what Set set, nil until it is called
}

var (
	_ propagation.TextMapCarrier = (*carrier)(nil)
	_ propagation.ValuesGetter   = (*carrier)(nil)
)

// Get returns the values of key, joined with commas as HTTP joins the
// values of a repeated header (W3C baggage allows it), or "".
func (c *carrier) Get(key string) string { return strings.Join(c.Values(key), ",") }

// Values returns the values of key.
func (c *carrier) Values(key string) []string {
	if v := c.added.Get(key); len(v) > 0 {
		return v
	}
	return c.md.Get(key)
}

// Set sets the value of key, replacing its values.
func (c *carrier) Set(key, value string) {
	if c.added == nil {
		c.added = metadata.MD{}
	}
	c.added.Set(key, value)
}

// Keys returns the keys of the metadata, those Set set included.
func (c *carrier) Keys() []string {
	keys := make([]string, 0, len(c.md)+len(c.added))
	for k := range c.md {
		keys = append(keys, k)
	}
	for k := range c.added {
		if _, ok := c.md[k]; !ok {
			keys = append(keys, k)
		}
	}
	return keys
}

// serverStream is the grpc.ServerStream a streaming handler gets: ss with
// the call's context.Context.
type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

// Context returns the call's context.Context, which carries its
// contextvars.Context and extracted baggage.
func (s *serverStream) Context() context.Context { return s.ctx }

// internalError is the error the interceptors return for a nil argument:
// its message starts "contextvars: ", as every error of this module's does,
// and gRPC sends it with code Internal (status.Code reads GRPCStatus).
type internalError string

func (e internalError) Error() string { return string(e) }

// GRPCStatus returns e as a status of code Internal.
func (e internalError) GRPCStatus() *status.Status { return status.New(codes.Internal, string(e)) }
