package baggagevars_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"

	"github.com/go-contextvars/contextvars"
	"github.com/go-contextvars/contextvars/baggagevars"
	"github.com/go-contextvars/contextvars/httpvars"
)

// TestHandler_baggageFillsIn: a caller's baggage sets only the chosen vars
// the request has no value for; it never replaces what the server's own
// middleware set, in whichever order the middleware and p.Handler are
// chained (an authentication middleware's user must not be the caller's
// to choose). A var's default is not a value.
func TestHandler_baggageFillsIn(t *testing.T) {
	user := contextvars.NewVar[string]("user")
	region := contextvars.NewVarWithDefault("region", "eu")
	p := baggagevars.New(baggagevars.String(user, "user.id"), baggagevars.String(region, "region"))
	auth := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") == "alice-token" {
				user.Set("alice")
			}
			next.ServeHTTP(w, r)
		})
	}
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := user.Get()
		reg, _ := region.Get()
		io.WriteString(w, u+" "+reg)
	})
	tests := []struct {
		name    string
		h       http.Handler
		authz   string
		baggage string
		want    string
	}{
		{"auth outside p.Handler", auth(p.Handler(app)), "alice-token", "user.id=admin,region=us", "alice us"},
		{"auth inside p.Handler", p.Handler(auth(app)), "alice-token", "user.id=admin,region=us", "alice us"},
		{"auth outside httpvars and p.Handler", auth(httpvars.Handler(p.Handler(app))), "alice-token", "user.id=admin", "alice eu"},
		{"auth between httpvars and p.Handler", httpvars.Handler(auth(p.Handler(app))), "alice-token", "user.id=admin", "alice eu"},
		{"no credential: the caller's value fills in", auth(p.Handler(app)), "", "user.id=bob", "bob eu"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.h)
			defer srv.Close()
			for range 3 { // one keep-alive connection: nothing carries over
				req, err := http.NewRequest("GET", srv.URL, nil)
				require.NoError(t, err)
				if tt.authz != "" {
					req.Header.Set("Authorization", tt.authz)
				}
				req.Header.Set("Baggage", tt.baggage)
				resp, err := srv.Client().Do(req)
				require.NoError(t, err)
				body, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				resp.Body.Close()
				assert.Equal(t, tt.want, string(body))
			}
		})
	}
}

// TestApply_fillsIn: Apply sets a var the current context lacks, keeps one
// it holds, and counts only what it set.
func TestApply_fillsIn(t *testing.T) {
	p := newPropagator()
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Baggage", "tenant=evil,attempt=3")
	ctx := p.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	inNew(t, func() {
		tenant.Set("acme")
		assert.Equal(t, 1, baggagevars.Apply(ctx))
		got, _ := tenant.Get()
		assert.Equal(t, "acme", got)
		n, _ := attempt.Get()
		assert.Equal(t, 3, n)
	})
}

// roundTripFunc is an http.RoundTripper made of a func.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestTransport_underBaggageInjector: a base RoundTripper that writes the
// baggage header anew from the request context's OpenTelemetry baggage, as
// otelhttp's Transport with propagation.Baggage does, still sends the
// chosen vars, also when that context already holds baggage (a service
// that received some).
func TestTransport_underBaggageInjector(t *testing.T) {
	p := newPropagator()
	var sent string
	otelLike := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		propagation.Baggage{}.Inject(r.Context(), propagation.HeaderCarrier(r.Header))
		sent = r.Header.Get("Baggage")
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: r}, nil
	})
	client := &http.Client{Transport: p.Transport(otelLike)}
	received := httptest.NewRequest("GET", "/", nil)
	received.Header.Set("Baggage", "other=1")
	ctx := p.Extract(received.Context(), propagation.HeaderCarrier(received.Header))
	inNew(t, func() {
		tenant.Set("acme")
		req, err := http.NewRequestWithContext(ctx, "GET", "http://b.internal/", nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
	})
	assert.Contains(t, sent, "tenant=acme")
	assert.Contains(t, sent, "other=1")
}

// TestApply_laterExtractWins: a ctx that went through two Extracts (the
// request's header, then the headers of a queue message the request
// handles, or a gateway's re-extraction) holds the setters of both. Extract
// merges its baggage "the carrier's members winning", so
// baggage.FromContext(ctx) says tenant=msg; Apply in a fresh context must
// agree: Apply goes newest first (a first version of the fill-in rule ran
// the older setter first and then skipped the newer one).
func TestApply_laterExtractWins(t *testing.T) {
	p := newPropagator()
	ctx := p.Extract(context.Background(), propagation.MapCarrier{"baggage": "tenant=req"})
	ctx = p.Extract(ctx, propagation.MapCarrier{"baggage": "tenant=msg"})
	assert.Equal(t, "msg", baggage.FromContext(ctx).Member("tenant").Value(), "the newer carrier wins the OTel baggage")
	inNew(t, func() {
		baggagevars.Apply(ctx)
		got, _ := tenant.Get()
		assert.Equal(t, "msg", got, "the var agrees with baggage.FromContext(ctx)")
	})
}

// TestApply_fieldOrderWithinOneExtract: one Propagator may carry
// one var under two keys (New rejects only a shared key), say during a
// rename of the baggage key. Within one Extract, Apply sets the var from
// the first field (the order of p's fields, as Inject writes them), while
// a newer Extract wins over an older one. (Session-11 third review: a
// first version reversed the fields too.)
func TestApply_fieldOrderWithinOneExtract(t *testing.T) {
	tenant := contextvars.NewVar[string]("tenant")
	p := baggagevars.New(baggagevars.String(tenant, "tenant"), baggagevars.String(tenant, "tenant.old"))
	carrier := propagation.MapCarrier{"baggage": "tenant=new-name,tenant.old=old-name"}
	ctx := p.Extract(context.Background(), carrier)
	require.NoError(t, contextvars.New().Run(func() error {
		assert.Equal(t, 1, baggagevars.Apply(ctx))
		got, _ := tenant.Get()
		assert.Equal(t, "new-name", got, "the first field of the one Extract")
		return nil
	}))
}
