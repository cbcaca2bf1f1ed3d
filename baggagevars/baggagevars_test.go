package baggagevars_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.uber.org/goleak"

	"github.com/go-contextvars/contextvars"
	"github.com/go-contextvars/contextvars/baggagevars"
	"github.com/go-contextvars/contextvars/httpvars"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	tenant   = contextvars.NewVar[string]("tenant")
	clientIP = contextvars.NewVar[netip.Addr]("client_ip")
	attempt  = contextvars.NewVar[int]("attempt")
	secret   = contextvars.NewVar[string]("secret") // never chosen: never travels
)

func newPropagator() *baggagevars.Propagator {
	return baggagevars.New(
		baggagevars.String(tenant, "tenant"),
		baggagevars.Text(clientIP, "client.ip"),
		baggagevars.Func(attempt, "attempt", func(n int) (string, error) { return strconv.Itoa(n), nil }, strconv.Atoi),
	)
}

// inNew runs fn in a new, empty context.
func inNew(t *testing.T, fn func()) {
	t.Helper()
	require.NoError(t, contextvars.New().Run(func() error { fn(); return nil }))
}

func TestPropagator_roundTrip(t *testing.T) {
	p := newPropagator()
	carrier := propagation.MapCarrier{}
	inNew(t, func() {
		tenant.Set("acme")
		clientIP.Set(netip.MustParseAddr("10.0.0.7"))
		attempt.Set(2)
		secret.Set("hunter2")
		p.Inject(context.Background(), carrier)
	})
	assert.NotContains(t, carrier.Get("baggage"), "hunter2", "only chosen vars travel")
	assert.Equal(t, []string{"baggage"}, p.Fields())

	ctx := p.Extract(context.Background(), carrier)
	inNew(t, func() {
		got, ok := tenant.Get()
		assert.False(t, ok, "Extract sets nothing by itself: %q", got)
		assert.Equal(t, 3, baggagevars.Apply(ctx))
		got, _ = tenant.Get()
		assert.Equal(t, "acme", got)
		ip, _ := clientIP.Get()
		assert.Equal(t, netip.MustParseAddr("10.0.0.7"), ip)
		n, _ := attempt.Get()
		assert.Equal(t, 2, n)
		_, ok = secret.Get()
		assert.False(t, ok)
	})
	assert.Zero(t, p.Errors())
}

// TestPropagator_otelInterop checks, against OpenTelemetry's own Baggage
// propagator on the other end, that members cross in both directions and
// none is clobbered.
func TestPropagator_otelInterop(t *testing.T) {
	p := newPropagator()
	composite := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}, p)
	other, err := baggage.NewMemberRaw("other", "1")
	require.NoError(t, err)
	bag, err := baggage.New(other)
	require.NoError(t, err)

	t.Run("ours to OpenTelemetry's", func(t *testing.T) {
		carrier := propagation.MapCarrier{}
		inNew(t, func() {
			tenant.Set("acme")
			composite.Inject(baggage.ContextWithBaggage(context.Background(), bag), carrier)
		})
		got := baggage.FromContext(propagation.Baggage{}.Extract(context.Background(), carrier))
		assert.Equal(t, "1", got.Member("other").Value(), "a member set through plain OpenTelemetry baggage is kept")
		assert.Equal(t, "acme", got.Member("tenant").Value(), "ours arrive as OpenTelemetry baggage")
	})
	t.Run("OpenTelemetry's to ours", func(t *testing.T) {
		ten, err := baggage.NewMemberRaw("tenant", "globex")
		require.NoError(t, err)
		sent, err := bag.SetMember(ten)
		require.NoError(t, err)
		carrier := propagation.MapCarrier{}
		propagation.Baggage{}.Inject(baggage.ContextWithBaggage(context.Background(), sent), carrier)

		ctx := composite.Extract(context.Background(), carrier)
		got := baggage.FromContext(ctx)
		assert.Equal(t, "1", got.Member("other").Value())
		assert.Equal(t, "globex", got.Member("tenant").Value())
		inNew(t, func() {
			baggagevars.Apply(ctx)
			v, _ := tenant.Get()
			assert.Equal(t, "globex", v, "a member sent by OpenTelemetry sets our var")
		})
	})
	t.Run("ours alone keeps ctx's baggage", func(t *testing.T) {
		carrier := propagation.MapCarrier{}
		inNew(t, func() {
			tenant.Set("initech")
			p.Inject(baggage.ContextWithBaggage(context.Background(), bag), carrier)
		})
		got, err := baggage.Parse(carrier.Get("baggage"))
		require.NoError(t, err)
		assert.Equal(t, "1", got.Member("other").Value())
		assert.Equal(t, "initech", got.Member("tenant").Value())
	})
}

// TestHTTP_twoServices: A serves requests (each in its own context through
// httpvars), sets the tenant from its query and calls B through Transport;
// B (through Handler) reports what it sees. Many concurrent requests with
// distinct values: every value arrives where it was sent and nowhere else.
func TestHTTP_twoServices(t *testing.T) {
	p := newPropagator()
	b := httptest.NewServer(httpvars.Handler(p.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ten, _ := tenant.Get()
		n, _ := attempt.Get()
		_, hasSecret := secret.Get()
		fromOTel := baggage.FromContext(r.Context()).Member("tenant").Value()
		fmt.Fprintf(w, "tenant=%s attempt=%d secret=%v otel=%s", ten, n, hasSecret, fromOTel)
		tenant.Set("set-in-B") // must not reach the next request
	}))))
	defer b.Close()
	bTransport := &http.Transport{MaxConnsPerHost: 4}
	defer bTransport.CloseIdleConnections()
	toB := &http.Client{Transport: p.Transport(bTransport)}

	a := httptest.NewServer(httpvars.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tenant.Set(r.URL.Query().Get("tenant"))
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		attempt.Set(n)
		secret.Set("hunter2")
		req, _ := http.NewRequestWithContext(r.Context(), "GET", b.URL, nil)
		resp, err := toB.Do(req)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer resp.Body.Close()
		_, _ = io.Copy(w, resp.Body)
	})))
	defer a.Close()
	aTransport := &http.Transport{MaxConnsPerHost: 4}
	defer aTransport.CloseIdleConnections()
	client := &http.Client{Transport: aTransport}

	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 40 {
				ten := fmt.Sprintf("t%d-%d", g, i)
				resp, err := client.Get(fmt.Sprintf("%s/?tenant=%s&n=%d", a.URL, ten, i))
				if !assert.NoError(t, err) {
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				assert.Equal(t, fmt.Sprintf("tenant=%s attempt=%d secret=false otel=%s", ten, i, ten), string(body))
			}
		})
	}
	wg.Wait()
	assert.Zero(t, p.Errors())
}

// TestHandler_hostileInput: bad baggage never stops a request; the vars
// concerned stay unset, and the error is counted and handed to the hook.
func TestHandler_hostileInput(t *testing.T) {
	many := make([]string, 100)
	for i := range many {
		many[i] = fmt.Sprintf("k%d=v", i)
	}
	cases := []struct {
		name       string
		header     string
		wantTenant string // "" for unset
		wantIP     string
		wantErrors bool
	}{
		{"malformed", "tenant=acme,;;;=,=x", "acme", "", true},
		{"only garbage", ";;;,,,===", "", "", true},
		{"over 8192 bytes", "tenant=acme," + strings.Repeat("x", 9000) + "=1", "", "", true},
		{"over the member limit, ours last", strings.Join(many, ",") + ",tenant=acme", "", "", true},
		{"bad percent-encoding", "tenant=%zz%,client.ip=10.0.0.1", "", "10.0.0.1", true},
		{"value that does not decode", "tenant=acme,client.ip=not-an-ip", "acme", "", true},
		{"empty", "", "", "", false},
		{"fine", "tenant=acme,client.ip=10.0.0.1", "acme", "10.0.0.1", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPropagator()
			var hooked []error
			var mu sync.Mutex
			p.SetErrorHandler(func(err error) { mu.Lock(); hooked = append(hooked, err); mu.Unlock() })
			served := false
			h := p.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				served = true
				ten, _ := tenant.Get()
				assert.Equal(t, tc.wantTenant, ten, "tenant")
				ip, ok := clientIP.Get()
				if tc.wantIP == "" {
					assert.False(t, ok, "client.ip stays unset")
				} else {
					assert.Equal(t, tc.wantIP, ip.String())
				}
			}))
			req := httptest.NewRequest("GET", "/", nil)
			req.Header.Set("baggage", tc.header)
			assert.NotPanics(t, func() { h.ServeHTTP(httptest.NewRecorder(), req) })
			assert.True(t, served, "the request goes on")
			assert.Equal(t, tc.wantErrors, p.Errors() > 0, "errors counted: %d", p.Errors())
			assert.Equal(t, int(p.Errors()), len(hooked), "every error reaches the hook")
			for _, err := range hooked {
				assert.True(t, strings.HasPrefix(err.Error(), "contextvars: "), "%v", err)
				t.Log(err)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	assert.PanicsWithError(t, "contextvars: baggagevars: nil var", func() { baggagevars.String(nil, "k") })
	assert.Panics(t, func() { baggagevars.String(tenant, "") }, "an empty key")
	assert.PanicsWithError(t, "contextvars: baggagevars: nil encode or decode func", func() {
		baggagevars.Func[int](attempt, "n", nil, strconv.Atoi)
	})
	assert.PanicsWithError(t, `contextvars: baggagevars.New: two fields with key "k"`, func() {
		baggagevars.New(baggagevars.String(tenant, "k"), baggagevars.Func(attempt, "k", func(int) (string, error) { return "", nil }, strconv.Atoi))
	})
	assert.PanicsWithError(t, "contextvars: baggagevars.New: zero Field", func() { baggagevars.New(baggagevars.Field{}) })
	var nilP *baggagevars.Propagator
	assert.PanicsWithError(t, "contextvars: baggagevars: Propagator.Handler: nil Propagator or http.Handler", func() { nilP.Handler(http.NotFoundHandler()) })
	assert.PanicsWithError(t, "contextvars: baggagevars: Propagator.Handler: nil Propagator or http.Handler", func() { newPropagator().Handler(nil) })
	assert.PanicsWithError(t, "contextvars: baggagevars: Propagator.Transport: nil Propagator", func() { nilP.Transport(nil) })
	_, err := newPropagator().Transport(nil).RoundTrip(nil)
	assert.EqualError(t, err, "contextvars: baggagevars: nil *http.Request")

	// A value that does not encode is reported, and not sent.
	p := baggagevars.New(baggagevars.Func(attempt, "attempt", func(int) (string, error) { return "", errors.New("no") }, strconv.Atoi))
	carrier := propagation.MapCarrier{}
	inNew(t, func() {
		attempt.Set(1)
		p.Inject(context.Background(), carrier)
	})
	assert.Empty(t, carrier.Get("baggage"))
	assert.Equal(t, int64(1), p.Errors())
}

// FuzzBaggageExtract feeds arbitrary baggage headers to the receiving side:
// it must never panic, and what it sets must come from the header.
func FuzzBaggageExtract(f *testing.F) {
	for _, s := range []string{
		"tenant=acme", "tenant=acme,client.ip=10.0.0.1,attempt=3", "tenant=%zz", "attempt=x",
		"tenant=a;prop=1", ";;;", "tenant=" + strings.Repeat("a", 8200), "client.ip=::1,attempt=-1",
	} {
		f.Add(s)
	}
	p := newPropagator()
	f.Fuzz(func(t *testing.T, header string) {
		ctx := p.Extract(context.Background(), propagation.MapCarrier{"baggage": header})
		require.NoError(t, contextvars.New().Run(func() error {
			baggagevars.Apply(ctx)
			if ten, ok := tenant.Get(); ok {
				b, _ := baggage.Parse(header)
				assert.Equal(t, b.Member("tenant").Value(), ten)
			}
			return nil
		}))
	})
}

// TestPropagator_logsErrorsWithNoHandler: with no error handler set, errors
// are not silent: the first is logged to slog.Default() at level Warn, then
// at most one a second (a flood costs one line a second); a handler replaces
// the logging, and SetErrorHandler(nil) brings it back.
func TestPropagator_logsErrorsWithNoHandler(t *testing.T) {
	var buf bytes.Buffer
	old, oldOut, oldFlags := slog.Default(), log.Writer(), log.Flags()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	defer func() {
		// SetDefault also sends package log's output to the handler:
		// restore that too, or later tests' logs go to buf.
		slog.SetDefault(old)
		log.SetOutput(oldOut)
		log.SetFlags(oldFlags)
	}()
	bad := propagation.MapCarrier{"baggage": "client.ip=not-an-ip"}

	p := newPropagator()
	for range 5 {
		p.Extract(context.Background(), bad)
	}
	assert.Equal(t, int64(5), p.Errors())
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 1, "one line for a burst: %s", buf.String())
	assert.Contains(t, lines[0], "level=WARN")
	assert.Contains(t, lines[0], "contextvars: baggagevars:")
	assert.Contains(t, lines[0], "client.ip")
	assert.Contains(t, lines[0], "errors=1")

	buf.Reset()
	handled := 0
	p.SetErrorHandler(func(error) { handled++ })
	p.Extract(context.Background(), bad)
	assert.Equal(t, 1, handled)
	assert.Empty(t, buf.String(), "a handler replaces the logging")

	q := newPropagator()
	q.SetErrorHandler(func(error) {})
	q.Extract(context.Background(), bad)
	assert.Empty(t, buf.String(), "a handler that does nothing silences the errors")
	q.SetErrorHandler(nil)
	q.Extract(context.Background(), bad)
	assert.Contains(t, buf.String(), "errors=2", "nil restores the logging")

	// A long header value is cut.
	buf.Reset()
	r := newPropagator()
	r.Extract(context.Background(), propagation.MapCarrier{"baggage": "client.ip=" + strings.Repeat("x", 4000)})
	assert.Equal(t, int64(1), r.Errors())
	assert.Less(t, buf.Len(), 1000, buf.String())
	assert.Contains(t, buf.String(), "…")
}
