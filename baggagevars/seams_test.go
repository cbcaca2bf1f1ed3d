package baggagevars_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"

	"github.com/go-contextvars/contextvars"
	"github.com/go-contextvars/contextvars/baggagevars"
)

// TestSeams_keyThatDoesNotTravel: Func accepts any key that
// baggage.NewMemberRaw accepts (any non-empty UTF-8), but a key that is not
// a W3C token (a space, a non-ASCII letter, '=' ...) is never written by
// OpenTelemetry's Member.String. The chosen var then never reaches the next
// service, and nothing is reported: the key must be refused when the Field
// is made, or the drop reported.
func TestSeams_keyThatDoesNotTravel(t *testing.T) {
	for _, key := range []string{"user id", "usuário", "a=b", "tenant,x"} {
		t.Run(key, func(t *testing.T) {
			var f baggagevars.Field
			func() {
				defer func() { recover() }() // refusing the key is a fine answer
				f = baggagevars.String(tenant, key)
			}()
			if f.Var() == nil {
				return // refused at construction: loud
			}
			p := baggagevars.New(f)
			carrier := propagation.MapCarrier{}
			inNew(t, func() {
				tenant.Set("acme")
				p.Inject(context.Background(), carrier)
			})
			sent := carrier.Get("baggage") != ""
			assert.True(t, sent || p.Errors() > 0,
				"var with key %q set to acme: not sent (header %q) and no error reported", key, carrier.Get("baggage"))
		})
	}
}

// TestSeams_oversizedCarrierHeaderReportedDroppedButSent: Inject reports
// that it dropped the carrier's over-limit baggage header, yet (when no
// chosen var is set) leaves it in the carrier, and it is sent.
func TestSeams_oversizedCarrierHeaderReportedDroppedButSent(t *testing.T) {
	p := newPropagator()
	var reported []error
	p.SetErrorHandler(func(err error) { reported = append(reported, err) })
	big := "other=" + strings.Repeat("x", 9000)
	carrier := propagation.MapCarrier{"baggage": big}
	inNew(t, func() { p.Inject(context.Background(), carrier) })
	require.Len(t, reported, 1)
	t.Logf("reported: %v", reported[0])
	if strings.Contains(reported[0].Error(), "dropped") {
		assert.False(t, carrier.Get("baggage") == big, "reported as dropped, but the %d-byte header is still in the carrier, and is sent", len(big))
	}
}

// TestSeams_nilInputs: bad input to the propagator's methods.
func TestSeams_nilInputs(t *testing.T) {
	var nilP *baggagevars.Propagator
	cases := map[string]func(){
		"nil Propagator Inject":          func() { nilP.Inject(context.Background(), propagation.MapCarrier{}) },
		"nil Propagator Extract":         func() { nilP.Extract(context.Background(), propagation.MapCarrier{"baggage": "tenant=a"}) },
		"nil Propagator Fields":          func() { nilP.Fields() },
		"nil Propagator Errors":          func() { nilP.Errors() },
		"nil Propagator SetErrorHandler": func() { nilP.SetErrorHandler(func(error) {}) },
		"Inject nil carrier":             func() { inNew(t, func() { tenant.Set("a"); newPropagator().Inject(context.Background(), nil) }) },
		"Extract nil carrier":            func() { newPropagator().Extract(context.Background(), nil) },
		"Extract nil ctx":                func() { newPropagator().Extract(nil, propagation.MapCarrier{"baggage": "tenant=a"}) },                 //nolint:staticcheck
		"Inject nil ctx":                 func() { inNew(t, func() { tenant.Set("a"); newPropagator().Inject(nil, propagation.MapCarrier{}) }) }, //nolint:staticcheck
		"Apply nil ctx":                  func() { baggagevars.Apply(nil) },                                                                      //nolint:staticcheck
		"Handler ServeHTTP nil request": func() {
			newPropagator().Handler(http.NotFoundHandler()).ServeHTTP(httptest.NewRecorder(), nil)
		},
	}
	for name, call := range cases {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					err, _ := r.(error)
					if err == nil || !strings.HasPrefix(err.Error(), "contextvars: ") {
						t.Errorf("panicked with %v", r)
					}
				}
			}()
			call()
		})
	}
}

// TestSeams_receiverKeepsAllInjectWrites: what Inject writes near the
// limits, with values that percent-encode, is read back whole by
// OpenTelemetry's own Baggage propagator and by Extract.
func TestSeams_receiverKeepsAllInjectWrites(t *testing.T) {
	p := newPropagator()
	carrier := propagation.MapCarrier{}
	// 70 other members with values full of characters that encode.
	var parts []string
	for i := range 70 {
		parts = append(parts, "k"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26))+"="+strings.Repeat("%20%2C", 20))
	}
	carrier["baggage"] = strings.Join(parts, ",")
	if len(carrier["baggage"]) > 8192 {
		carrier["baggage"] = carrier["baggage"][:8000]
		carrier["baggage"] = carrier["baggage"][:strings.LastIndex(carrier["baggage"], ",")]
	}
	inNew(t, func() {
		tenant.Set(strings.Repeat("é, ", 300))
		p.Inject(context.Background(), carrier)
	})
	h := carrier.Get("baggage")
	assert.LessOrEqual(t, len(h), 8192)
	got := propagation.Baggage{}.Extract(context.Background(), carrier)
	n := strings.Count(h, ",") + 1
	ctx := p.Extract(context.Background(), carrier)
	_ = got
	var tn string
	require.NoError(t, contextvars.New().Run(func() error {
		baggagevars.Apply(ctx)
		tn, _ = tenant.Get()
		return nil
	}))
	assert.Equal(t, strings.Repeat("é, ", 300), tn)
	t.Logf("header: %d bytes, %d members, errors %d", len(h), n, p.Errors())
}

// closeCounter is a RoundTripper that counts CloseIdleConnections calls.
type closeCounter struct{ closes int }

func (c *closeCounter) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, http.ErrNotSupported
}
func (c *closeCounter) CloseIdleConnections() { c.closes++ }

// TestSeams_transportClosesIdleConnections: an http.Client whose Transport
// is p.Transport(base) closes base's idle connections, as it would base's
// alone (it calls CloseIdleConnections only on a Transport that has it): a
// keep-alive connection is not left open until the server's Shutdown times
// out. Without it, a base with no such method is left alone.
func TestSeams_transportClosesIdleConnections(t *testing.T) {
	p := baggagevars.New()
	base := &closeCounter{}
	client := &http.Client{Transport: p.Transport(base)}
	client.CloseIdleConnections()
	assert.Equal(t, 1, base.closes)

	// A real connection: closed through the wrapper.
	var open atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	defer srv.Close()
	client = &http.Client{Transport: p.Transport(&http.Transport{})}
	resp, err := client.Get(srv.URL)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, int32(1), open.Load())
	client.CloseIdleConnections()
	require.Eventually(t, func() bool { return open.Load() == 0 }, 5*time.Second, time.Millisecond)

	// A base without the method: nothing to call, and no panic.
	(&http.Client{Transport: p.Transport(roundTripperFunc(func(*http.Request) (*http.Response, error) {
		return nil, http.ErrNotSupported
	}))}).CloseIdleConnections()
}

// roundTripperFunc is a RoundTripper of a func, with no other method.
type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
