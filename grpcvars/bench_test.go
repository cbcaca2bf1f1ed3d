package grpcvars_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/go-contextvars/contextvars"
	"github.com/go-contextvars/contextvars/grpcvars"
)

// BenchmarkUnaryServerInterceptor measures what the server interceptor adds
// to a call, without the network: extracting the baggage, the copy, Run.
func BenchmarkUnaryServerInterceptor(b *testing.B) {
	in := grpcvars.UnaryServerInterceptor(newPropagator())
	handler := func(context.Context, any) (any, error) { return nil, nil }
	info := &grpc.UnaryServerInfo{FullMethod: "/grpc.testing.TestService/UnaryCall"}
	for _, bc := range []struct {
		name string
		md   metadata.MD
	}{
		{"baggage=none", metadata.MD{}},
		{"baggage=2vars", metadata.Pairs("baggage", "tenant=acme,user=alice")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := metadata.NewIncomingContext(context.Background(), bc.md)
			b.ReportAllocs()
			for b.Loop() {
				_, _ = in(ctx, nil, info, handler)
			}
		})
	}
}

// BenchmarkUnaryClientInterceptor measures what the client interceptor adds
// to a call, without the network: encoding the vars into metadata.
func BenchmarkUnaryClientInterceptor(b *testing.B) {
	out := grpcvars.UnaryClientInterceptor(newPropagator())
	invoker := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	for _, bc := range []struct {
		name string
		set  func()
	}{
		{"vars=0", func() {}},
		{"vars=2", func() { tenant.Set("acme"); user.Set("alice") }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			_ = contextvars.New().Run(func() error {
				bc.set()
				b.ReportAllocs()
				for b.Loop() {
					_ = out(context.Background(), "/grpc.testing.TestService/UnaryCall", nil, nil, nil, invoker)
				}
				return nil
			})
		})
	}
}
