package grpcvars_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
)

// authInterceptor is an application's interceptor that sets user from
// the x-user metadata, when the call has one. before records what user
// was on the serving goroutine before it set anything.
func authInterceptor(mu *sync.Mutex, before *[]string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		b, _ := user.Get()
		mu.Lock()
		*before = append(*before, b)
		mu.Unlock()
		md, _ := metadata.FromIncomingContext(ctx)
		if u := md.Get("x-user"); len(u) > 0 {
			user.Set(u[0])
		}
		return h(ctx, req)
	}
}

// TestSeams_outerInterceptorOrder: httpvars promises that middleware order
// does not matter (what a middleware outside it sets is seen by the
// request, and dropped at its end). The gRPC counterpart does not: an auth
// interceptor chained before grpcvars' sets user on the serving goroutine,
// outside any Run; the handler, run in a copy of the interceptor's base,
// never sees it (silently), and with a stream worker the value stays on the
// worker and is seen by the next call's interceptors.
func TestSeams_outerInterceptorOrder(t *testing.T) {
	var mu sync.Mutex
	var before []string
	conn := serve(t, newPropagator(), &testService{}, []grpc.ServerOption{
		grpc.NumStreamWorkers(1),
		// Server options' interceptors chain in order: ours (from serve)
		// first, so put auth in front with grpc.UnaryInterceptor.
		grpc.UnaryInterceptor(authInterceptor(&mu, &before)),
	}, nil)
	client := testpb.NewTestServiceClient(conn)

	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-user", "alice")
	resp, err := client.UnaryCall(ctx, request("r-1"))
	require.NoError(t, err)
	got := decode(resp.GetPayload().GetBody())
	assert.Equal(t, "alice", got.User, "the user an outer interceptor set is not seen by the handler")

	_, err = client.UnaryCall(context.Background(), request("r-2"))
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"", ""}, before, "a call's serving goroutine saw the previous call's user")
}

// TestSeams_baggageDoesNotReplaceInterceptorValue: an interceptor chained
// before grpcvars' sets user from the call's credentials; the caller's
// baggage, which names another user, must not replace it (baggagevars.Apply
// fills in only). Without the credential, the baggage's user fills in.
func TestSeams_baggageDoesNotReplaceInterceptorValue(t *testing.T) {
	var mu sync.Mutex
	var before []string
	conn := serve(t, newPropagator(), &testService{}, []grpc.ServerOption{
		grpc.UnaryInterceptor(authInterceptor(&mu, &before)),
	}, nil)
	client := testpb.NewTestServiceClient(conn)

	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-user", "alice", "baggage", "user=admin,tenant=acme")
	resp, err := client.UnaryCall(ctx, request("r-1"))
	require.NoError(t, err)
	got := decode(resp.GetPayload().GetBody())
	assert.Equal(t, "alice", got.User, "the caller's baggage replaced the user an interceptor set")
	assert.Equal(t, "acme", got.Tenant, "baggage fills in a var nothing set")

	ctx = metadata.AppendToOutgoingContext(context.Background(), "baggage", "user=bob")
	resp, err = client.UnaryCall(ctx, request("r-2"))
	require.NoError(t, err)
	assert.Equal(t, "bob", decode(resp.GetPayload().GetBody()).User)
}
