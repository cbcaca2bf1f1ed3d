// Package integration holds tests of contextvars' middleware beside the
// instrumentation a service already has — OpenTelemetry tracing through
// otelhttp — and nothing else. It is a module of its own, so that otelhttp
// and the OpenTelemetry SDK never enter the requirements of the contextvars
// module (whose baggagevars needs only OpenTelemetry's API) or of grpcvars
// (whose users need gRPC, not otelhttp); see otelhttp_test.go and the
// README's "With OpenTelemetry tracing".
package integration
