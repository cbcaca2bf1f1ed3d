package grpcvars_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/baggage"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/go-contextvars/contextvars"
	"github.com/go-contextvars/contextvars/baggagevars"
	"github.com/go-contextvars/contextvars/grpcvars"
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
	// service is set where the server's interceptors are made.
	service = contextvars.NewVar[string]("service")
	// requestID is set by the handler, from the request.
	requestID = contextvars.NewVar[string]("request_id")
)

// newPropagator returns a Propagator for tenant and user.
func newPropagator() *baggagevars.Propagator {
	return baggagevars.New(baggagevars.String(tenant, "tenant"), baggagevars.String(user, "user"))
}

// seen is what a handler saw for one request, sent back as the payload.
type seen struct {
	Before    string // request_id before the handler set it: "" unless a call leaked
	RequestID string // request_id after the handler set it
	Tenant    string
	User      string
	Note      string
	Service   string
	Carried   bool   // the call's context.Context carries a contextvars.Context
	CtxTenant string // tenant in that Context
	Baggage   string // the OpenTelemetry baggage of the call's ctx, sorted
	TraceID   string // of the span in the call's ctx
	SpanID    string
	Recording bool  // the span in the call's ctx is recording (a local span)
	Next      *seen // what the next service saw, if the handler called one
}

// look reports what the calling goroutine's current context and ctx hold,
// after setting request_id to id.
func look(ctx context.Context, id string) *seen {
	var s seen
	s.Before, _ = requestID.Get()
	requestID.Set(id)
	s.RequestID, _ = requestID.Get()
	s.Tenant, _ = tenant.Get()
	s.User, _ = user.Get()
	s.Note, _ = note.Get()
	s.Service, _ = service.Get()
	if c, ok := contextvars.FromContext(ctx); ok {
		s.Carried = true
		s.CtxTenant, _ = tenant.In(c)
	}
	var members []string
	for _, m := range baggage.FromContext(ctx).Members() {
		members = append(members, m.Key()+"="+m.Value())
	}
	slices.Sort(members) // the baggage's order is unspecified
	s.Baggage = strings.Join(members, ",")
	lookSpan(ctx, &s)
	return &s
}

// testService is grpc's interop TestService: UnaryCall and FullDuplexCall
// answer each request with what the handler saw, as JSON. The request's
// payload is the request id; next, if not nil, is called from UnaryCall and
// what it saw is added.
type testService struct {
	testpb.UnimplementedTestServiceServer
	next testpb.TestServiceClient
}

func (s *testService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	got := look(ctx, string(req.GetPayload().GetBody()))
	if s.next != nil {
		user.Set(got.User + "+A") // set in this service: sent on
		note.Set("A's note")      // not chosen: not sent on
		resp, err := s.next.UnaryCall(ctx, request("next-"+got.RequestID))
		if err != nil {
			return nil, err
		}
		got.Next = decode(resp.GetPayload().GetBody())
	}
	return response(got), nil
}

// FullDuplexCall answers each message with what it saw; request_id is set
// by the first message only, so the later ones see it in Before: the
// call's own context lasts for the whole call.
func (s *testService) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
	for i := 0; ; i++ {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		id := string(req.GetPayload().GetBody())
		var got *seen
		if i == 0 {
			got = look(stream.Context(), id)
		} else {
			before, _ := requestID.Get()
			got = look(stream.Context(), before)
			got.Before = before
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: response(got).Payload}); err != nil {
			return err
		}
	}
}

func request(id string) *testpb.SimpleRequest {
	return &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte(id)}}
}

func response(s *seen) *testpb.SimpleResponse {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: b}}
}

func decode(b []byte) *seen {
	var s seen
	if err := json.Unmarshal(b, &s); err != nil {
		return &seen{Before: "undecodable: " + err.Error()}
	}
	return &s
}

// serve starts a gRPC server for svc over bufconn, with p's server
// interceptors made in a context where service is "billing", and returns a
// client connection to it with p's client interceptors (none if p is nil).
// Both are stopped when the test ends.
func serve(t *testing.T, p *baggagevars.Propagator, svc testpb.TestServiceServer, srvOpts []grpc.ServerOption, dialOpts []grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	var srv *grpc.Server
	require.NoError(t, contextvars.New().Run(func() error {
		service.Set("billing")
		srv = grpc.NewServer(append([]grpc.ServerOption{
			grpc.ChainUnaryInterceptor(grpcvars.UnaryServerInterceptor(p)),
			grpc.ChainStreamInterceptor(grpcvars.StreamServerInterceptor(p)),
		}, srvOpts...)...)
		return nil
	}))
	testpb.RegisterTestServiceServer(srv, svc)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	return dial(t, lis, p, dialOpts, func() { srv.Stop(); <-done })
}

// dial returns a client connection to lis, closed (then stop called) when
// the test ends.
func dial(t *testing.T, lis *bufconn.Listener, p *baggagevars.Propagator, dialOpts []grpc.DialOption, stop func()) *grpc.ClientConn {
	t.Helper()
	opts := []grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}
	if p != nil {
		opts = append(opts,
			grpc.WithChainUnaryInterceptor(grpcvars.UnaryClientInterceptor(p)),
			grpc.WithChainStreamInterceptor(grpcvars.StreamClientInterceptor(p)))
	}
	conn, err := grpc.NewClient("passthrough:///bufnet", append(opts, dialOpts...)...)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = conn.Close()
		stop()
	})
	return conn
}

// callAs calls UnaryCall with request id id from a new context in which
// tenant and user are set, and note too (which must not travel).
func callAs(t *testing.T, client testpb.TestServiceClient, tnt, usr, id string) *seen {
	var got *seen
	require.NoError(t, contextvars.New().Run(func() error {
		tenant.Set(tnt)
		user.Set(usr)
		note.Set("secret")
		resp, err := client.UnaryCall(context.Background(), request(id))
		if err != nil {
			return err
		}
		got = decode(resp.GetPayload().GetBody())
		return nil
	}))
	return got
}

// TestUnary sends many concurrent unary calls, each from a context of its
// own: each handler sees its caller's chosen vars and no other call's
// request_id, also when one worker goroutine serves call after call
// (grpc.NumStreamWorkers(1)), and the values set at start-up.
func TestUnary(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []grpc.ServerOption
	}{
		{"goroutinePerCall", nil},
		{"oneWorker", []grpc.ServerOption{grpc.NumStreamWorkers(1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPropagator()
			client := testpb.NewTestServiceClient(serve(t, p, &testService{}, tc.opts, nil))
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					for i := range 25 {
						tnt, usr, id := fmt.Sprint("t", g), fmt.Sprint("u", i), fmt.Sprintf("r-%d-%d", g, i)
						got := callAs(t, client, tnt, usr, id)
						want := &seen{RequestID: id, Tenant: tnt, User: usr, Service: "billing",
							Carried: true, CtxTenant: tnt, Baggage: "tenant=" + tnt + ",user=" + usr}
						assert.Equal(t, want, got, "UnaryCall(%s)", id)
					}
				})
			}
			wg.Wait()
			assert.Zero(t, p.Errors(), "p.Errors()")
		})
	}
}

// TestStream runs two bidirectional streams at once: each handler runs in
// one context for the whole call, with its own caller's vars.
func TestStream(t *testing.T) {
	p := newPropagator()
	client := testpb.NewTestServiceClient(serve(t, p, &testService{}, nil, nil))
	var wg sync.WaitGroup
	for _, tnt := range []string{"acme", "globex"} {
		wg.Go(func() {
			assert.NoError(t, contextvars.New().Run(func() error {
				tenant.Set(tnt)
				stream, err := client.FullDuplexCall(context.Background())
				if err != nil {
					return err
				}
				for i := range 3 {
					req := &testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("s-" + tnt)}}
					if err := stream.Send(req); err != nil {
						return err
					}
					resp, err := stream.Recv()
					if err != nil {
						return err
					}
					want := &seen{RequestID: "s-" + tnt, Tenant: tnt, Service: "billing",
						Carried: true, CtxTenant: tnt, Baggage: "tenant=" + tnt}
					if i > 0 {
						want.Before = "s-" + tnt // set by the first message, in the call's context
					}
					assert.Equal(t, want, decode(resp.GetPayload().GetBody()), "message %d of %s's stream", i, tnt)
				}
				if err := stream.CloseSend(); err != nil {
					return err
				}
				_, err = stream.Recv()
				if !errors.Is(err, io.EOF) {
					return fmt.Errorf("after CloseSend: %v, want io.EOF", err)
				}
				return nil
			}))
		})
	}
	wg.Wait()
}

// TestClient_fromCtx: the client sends the vars of the context the calling
// code runs in, not those of the contextvars.Context the call's ctx carries
// (contextvars.LookupContext's rule); and without either, it sends no
// baggage.
func TestClient_fromCtx(t *testing.T) {
	client := testpb.NewTestServiceClient(serve(t, newPropagator(), &testService{}, nil, nil))

	c := contextvars.New()
	require.NoError(t, c.Run(func() error { tenant.Set("from-ctx"); return nil }))
	var got *seen
	require.NoError(t, contextvars.New().Run(func() error {
		tenant.Set("from-goroutine")
		resp, err := client.UnaryCall(contextvars.WithContext(context.Background(), c), request("r"))
		if err == nil {
			got = decode(resp.GetPayload().GetBody())
		}
		return err
	}))
	assert.Equal(t, "from-goroutine", got.Tenant, "the code's own context wins")

	// A plain goroutine runs in no context: the ctx's Context is used.
	done := make(chan *seen)
	go func() {
		resp, err := client.UnaryCall(contextvars.WithContext(context.Background(), c), request("r"))
		assert.NoError(t, err)
		done <- decode(resp.GetPayload().GetBody())
	}()
	assert.Equal(t, "from-ctx", (<-done).Tenant, "code in no context uses the ctx's")

	require.NoError(t, contextvars.New().Run(func() error {
		resp, err := client.UnaryCall(context.Background(), request("r"))
		if err == nil {
			got = decode(resp.GetPayload().GetBody())
		}
		return err
	}))
	assert.Equal(t, &seen{RequestID: "r", Service: "billing", Carried: true}, got, "a call with no var set")
}

// TestClient_keepsMetadata: baggage members and other metadata the caller
// put in the outgoing metadata are kept, and the caller's metadata is not
// changed.
func TestClient_keepsMetadata(t *testing.T) {
	var gotMD metadata.MD
	svc := &mdService{got: &gotMD}
	conn := serve(t, newPropagator(), svc, nil, nil)
	client := testpb.NewTestServiceClient(conn)
	md := metadata.Pairs("baggage", "other=1", "x-custom", "yes")
	require.NoError(t, contextvars.New().Run(func() error {
		tenant.Set("acme")
		_, err := client.UnaryCall(metadata.NewOutgoingContext(context.Background(), md), request("r"))
		return err
	}))
	assert.Equal(t, []string{"yes"}, gotMD.Get("x-custom"))
	require.Len(t, gotMD.Get("baggage"), 1)
	b, err := baggage.Parse(gotMD.Get("baggage")[0])
	require.NoError(t, err)
	assert.Equal(t, "1", b.Member("other").Value())
	assert.Equal(t, "acme", b.Member("tenant").Value())
	assert.Equal(t, metadata.Pairs("baggage", "other=1", "x-custom", "yes"), md, "the caller's metadata is unchanged")
}

// mdService records the incoming metadata of a unary call.
type mdService struct {
	testpb.UnimplementedTestServiceServer
	got *metadata.MD
}

func (s *mdService) UnaryCall(ctx context.Context, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	*s.got, _ = metadata.FromIncomingContext(ctx)
	return &testpb.SimpleResponse{}, nil
}

// TestServer_hostileBaggage: baggage that does not parse, or whose values
// are bad, never fails a call; the vars concerned stay unset, the others
// are set, and the Propagator counts the errors.
func TestServer_hostileBaggage(t *testing.T) {
	p := newPropagator()
	client := testpb.NewTestServiceClient(serve(t, p, &testService{}, nil, nil))
	for _, tc := range []struct {
		name    string
		baggage []string
		want    seen
	}{
		{"unparsable", []string{"%%%;;=="}, seen{}},
		{"badPercentEncoding", []string{"tenant=%zz,user=bob"}, seen{User: "bob", Baggage: "user=bob"}},
		{"tooLong", []string{"tenant=" + strings.Repeat("x", 9000)}, seen{}},
		{"twoEntries", []string{"tenant=acme", "user=bob"}, seen{Tenant: "acme", User: "bob", CtxTenant: "acme", Baggage: "tenant=acme,user=bob"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			for _, b := range tc.baggage {
				ctx = metadata.AppendToOutgoingContext(ctx, "baggage", b)
			}
			var resp *testpb.SimpleResponse
			require.NoError(t, contextvars.New().Run(func() error {
				var err error
				resp, err = client.UnaryCall(ctx, request("r"))
				return err
			}))
			want := tc.want
			want.RequestID, want.Service, want.Carried = "r", "billing", true
			if want.CtxTenant == "" {
				want.CtxTenant = want.Tenant
			}
			assert.Equal(t, &want, decode(resp.GetPayload().GetBody()))
		})
	}
	// The client's Inject reports the two carrier headers it cannot keep
	// (unparsable, too long) and drops the one over the limit, so the
	// server reports the two bad ones it gets (unparsable, bad encoding).
	assert.Equal(t, int64(4), p.Errors(), "p.Errors(): every bad header counted")
}

// TestServer_panicLeavesContext: a handler that panics (recovered by an
// interceptor before ours, as recovery middleware does) leaves its
// goroutine outside the call's context.
func TestServer_panicLeavesContext(t *testing.T) {
	p := newPropagator()
	in := grpcvars.UnaryServerInterceptor(p)
	require.NoError(t, contextvars.New().Run(func() error {
		tenant.Set("outside")
		func() {
			defer func() { _ = recover() }()
			_, _ = in(context.Background(), nil, &grpc.UnaryServerInfo{}, func(context.Context, any) (any, error) {
				tenant.Set("inside")
				panic("handler")
			})
		}()
		got, _ := tenant.Get()
		assert.Equal(t, "outside", got, "tenant after the panic")
		return nil
	}))
}

// TestNil: nil input gives contextvars: panics when the interceptors are
// made and errors when they are called whose messages start "contextvars: "
// (not gRPC's "rpc error: ...", found by the session-11 break review) and
// which gRPC sends with code Internal.
func TestNil(t *testing.T) {
	for name, f := range map[string]func(){
		"UnaryServerInterceptor":  func() { grpcvars.UnaryServerInterceptor(nil) },
		"StreamServerInterceptor": func() { grpcvars.StreamServerInterceptor(nil) },
		"UnaryClientInterceptor":  func() { grpcvars.UnaryClientInterceptor(nil) },
		"StreamClientInterceptor": func() { grpcvars.StreamClientInterceptor(nil) },
	} {
		assert.PanicsWithError(t, "contextvars: grpcvars."+name+": nil *baggagevars.Propagator", f, name)
	}

	p := newPropagator()
	var nilCtx context.Context
	errs := map[string]error{}
	_, errs["unary server, nil handler"] = grpcvars.UnaryServerInterceptor(p)(context.Background(), nil, nil, nil)
	_, errs["unary server, nil ctx"] = grpcvars.UnaryServerInterceptor(p)(nilCtx, nil, nil, func(context.Context, any) (any, error) { return nil, nil })
	errs["stream server, nil stream"] = grpcvars.StreamServerInterceptor(p)(nil, nil, nil, func(any, grpc.ServerStream) error { return nil })
	errs["stream server, nil handler"] = grpcvars.StreamServerInterceptor(p)(nil, nilCtxStream{}, nil, nil)
	errs["stream server, nil stream ctx"] = grpcvars.StreamServerInterceptor(p)(nil, nilCtxStream{}, nil, func(any, grpc.ServerStream) error { return nil })
	errs["unary client, nil invoker"] = grpcvars.UnaryClientInterceptor(p)(context.Background(), "m", nil, nil, nil, nil)
	errs["unary client, nil ctx"] = grpcvars.UnaryClientInterceptor(p)(nilCtx, "m", nil, nil, nil,
		func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil })
	_, errs["stream client, nil streamer"] = grpcvars.StreamClientInterceptor(p)(context.Background(), nil, nil, "m", nil)
	for name, err := range errs {
		if assert.Error(t, err, name) {
			assert.True(t, strings.HasPrefix(err.Error(), "contextvars: grpcvars: "), "%s: %q", name, err)
			assert.Equal(t, codes.Internal, status.Code(err), name)
		}
	}
}

// nilCtxStream is a grpc.ServerStream whose Context is nil.
type nilCtxStream struct{ grpc.ServerStream }

func (nilCtxStream) Context() context.Context { return nil }

// Example shows a server and a client with grpcvars' interceptors, over an
// in-memory connection: the tenant set by the caller is set in the handler.
func Example() {
	tenant := contextvars.NewVar[string]("tenant")
	p := baggagevars.New(baggagevars.String(tenant, "tenant"))

	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(grpcvars.UnaryServerInterceptor(p)),
		grpc.ChainStreamInterceptor(grpcvars.StreamServerInterceptor(p)),
	)
	testpb.RegisterTestServiceServer(srv, echoTenant{tenant: tenant})
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(grpcvars.UnaryClientInterceptor(p)),
		grpc.WithChainStreamInterceptor(grpcvars.StreamClientInterceptor(p)),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	client := testpb.NewTestServiceClient(conn)

	_ = contextvars.New().Run(func() error {
		tenant.Set("acme")
		resp, err := client.UnaryCall(context.Background(), &testpb.SimpleRequest{})
		if err != nil {
			fmt.Println(err)
			return nil
		}
		fmt.Println(string(resp.GetPayload().GetBody()))
		return nil
	})
	// Output: the handler sees tenant acme
}

// echoTenant answers UnaryCall with the tenant its handler sees.
type echoTenant struct {
	testpb.UnimplementedTestServiceServer
	tenant *contextvars.Var[string]
}

func (e echoTenant) UnaryCall(context.Context, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	t, _ := e.tenant.Get()
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: []byte("the handler sees tenant " + t)}}, nil
}
