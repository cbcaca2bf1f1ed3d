package baggagevars_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"

	"github.com/go-contextvars/contextvars"
	"github.com/go-contextvars/contextvars/baggagevars"
)

// member returns a baggage member, failing the test if it is invalid.
func member(t testing.TB, key, value string) baggage.Member {
	t.Helper()
	m, err := baggage.NewMemberRaw(key, value)
	require.NoError(t, err)
	return m
}

// withBaggage returns ctx with OpenTelemetry baggage of members.
func withBaggage(t testing.TB, ctx context.Context, members ...baggage.Member) context.Context {
	t.Helper()
	b, err := baggage.New(members...)
	require.NoError(t, err)
	return baggage.ContextWithBaggage(ctx, b)
}

// received returns the baggage an OpenTelemetry service that uses only
// propagation.Baggage extracts from carrier.
func received(carrier propagation.TextMapCarrier) baggage.Baggage {
	return baggage.FromContext(propagation.Baggage{}.Extract(context.Background(), carrier))
}

// hooked returns a Propagator whose reported errors are collected.
func hooked() (*baggagevars.Propagator, func() []error) {
	p := newPropagator()
	var mu sync.Mutex
	var errs []error
	p.SetErrorHandler(func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() })
	return p, func() []error { mu.Lock(); defer mu.Unlock(); return append([]error(nil), errs...) }
}

// TestInject_merges: the members of the header already in the carrier, of
// ctx's OpenTelemetry baggage and the chosen vars all reach a plain
// OpenTelemetry receiver; on a shared key ctx's baggage beats the header
// (as OpenTelemetry's own propagator writes it), and a chosen var beats
// both.
func TestInject_merges(t *testing.T) {
	cases := []struct {
		name   string
		header string
		ctx    []baggage.Member
		tenant string // "" for unset
		want   map[string]string
	}{
		{"header, ctx and ours", "from.header=1", []baggage.Member{member(t, "from.ctx", "1")}, "acme",
			map[string]string{"from.header": "1", "from.ctx": "1", "tenant": "acme"}},
		{"a middle service forwards vendor.flag", "vendor.flag=on,tenant=upstream", nil, "acme",
			map[string]string{"vendor.flag": "on", "tenant": "acme"}},
		{"ctx beats header", "k=header", []baggage.Member{member(t, "k", "ctx")}, "",
			map[string]string{"k": "ctx"}},
		{"ours beats both", "tenant=header", []baggage.Member{member(t, "tenant", "ctx")}, "ours",
			map[string]string{"tenant": "ours"}},
		{"ours unset: theirs kept", "tenant=header", nil, "",
			map[string]string{"tenant": "header"}},
		{"no header", "", []baggage.Member{member(t, "from.ctx", "1")}, "acme",
			map[string]string{"from.ctx": "1", "tenant": "acme"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, errs := hooked()
			carrier := propagation.MapCarrier{}
			if tc.header != "" {
				carrier.Set("baggage", tc.header)
			}
			ctx := context.Background()
			if len(tc.ctx) > 0 {
				ctx = withBaggage(t, ctx, tc.ctx...)
			}
			inNew(t, func() {
				if tc.tenant != "" {
					tenant.Set(tc.tenant)
				}
				p.Inject(ctx, carrier)
			})
			got := map[string]string{}
			for _, m := range received(carrier).Members() {
				got[m.Key()] = m.Value()
			}
			assert.Equal(t, tc.want, got, "Inject(%q): %q", tc.header, carrier.Get("baggage"))
			assert.Empty(t, errs())
		})
	}
}

// TestInject_limits: whatever else is in the baggage, the header Inject
// writes is within the limits OpenTelemetry's receivers enforce (64
// members, 8192 bytes), a chosen var is never dropped while room exists
// for it, and what was dropped is reported.
func TestInject_limits(t *testing.T) {
	others := func(n, size int) []baggage.Member {
		ms := make([]baggage.Member, n)
		for i := range ms {
			ms[i] = member(t, fmt.Sprintf("other%02d", i), strings.Repeat("x", size))
		}
		return ms
	}
	cases := []struct {
		name        string
		ctx         []baggage.Member
		header      string
		tenant      string
		wantTenant  string // "" for none received
		wantMembers int    // members received, ours (client.ip always, tenant) included
		wantDropped int    // members dropped, reported as ErrLimit; 0: no error
	}{
		{"room for all", others(10, 10), "", "acme", "acme", 12, 0},
		{"64 others and ours", others(64, 1), "", "acme", "acme", 64, 2},
		{"100 others and ours", others(100, 1), "", "acme", "acme", 64, 38},
		{"64 others in the header", nil, memberList(64), "acme", "acme", 64, 2},
		{"one member of 8182 bytes", others(1, 8182-len("other00=")), "", "acme", "acme", 2, 1},
		{"many large members", others(20, 1000), "", "acme", "acme", 10, 12},
		{"ours alone too large", nil, "", strings.Repeat("a", 8200), "", 1, 1},
		{"ours too large, others fit", others(3, 1), "", strings.Repeat("a", 8200), "", 4, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, errs := hooked()
			ctx := context.Background()
			if len(tc.ctx) > 0 {
				// baggage.New would truncate; build the baggage a
				// member at a time, as code that adds members does.
				b := baggage.Baggage{}
				for _, m := range tc.ctx {
					var err error
					b, err = b.SetMember(m)
					require.NoError(t, err)
				}
				ctx = baggage.ContextWithBaggage(ctx, b)
			}
			for range 20 { // map order varies between runs; the result must not
				carrier := propagation.MapCarrier{}
				if tc.header != "" {
					carrier.Set("baggage", tc.header)
				}
				inNew(t, func() {
					tenant.Set(tc.tenant)
					clientIP.Set(netip.MustParseAddr("10.0.0.1"))
					p.Inject(ctx, carrier)
				})
				h := carrier.Get("baggage")
				assert.LessOrEqual(t, len(h), 8192, "header size")
				got := received(carrier)
				assert.Equal(t, tc.wantMembers, got.Len(), "members received")
				assert.Equal(t, tc.wantTenant, got.Member("tenant").Value(), "the chosen var arrives")
				assert.Equal(t, "10.0.0.1", got.Member("client.ip").Value(), "the other chosen var arrives")
			}
			reported := errs()
			if tc.wantDropped == 0 {
				assert.Empty(t, reported)
				return
			}
			require.Len(t, reported, 20, "one report per Inject")
			assert.ErrorIs(t, reported[0], baggagevars.ErrLimit)
			assert.Contains(t, reported[0].Error(), fmt.Sprintf("dropped %d ", tc.wantDropped))
			t.Log(reported[0])
		})
	}
}

// memberList returns a baggage header of n members.
func memberList(n int) string {
	ms := make([]string, n)
	for i := range ms {
		ms[i] = fmt.Sprintf("h%02d=1", i)
	}
	return strings.Join(ms, ",")
}

// TestExtract_manyHeaderLines: a request with 60,000 baggage header lines
// (within net/http's default limit of 1 MiB of headers) is answered: the
// header, over 8192 bytes in all, is not read, the vars stay unset, and the
// drop is reported. Extract reads no further than 8192 bytes of it, which
// the allocation count shows without a clock: it does not grow with the
// number of lines.
func TestExtract_manyHeaderLines(t *testing.T) {
	const lines = 60000
	p, errs := hooked()
	srv := httptest.NewUnstartedServer(p.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, ok := tenant.Get()
		fmt.Fprintf(w, "tenant set: %v", ok)
	})))
	// Since Go 1.27 net/http refuses more than 500 header values unless
	// Server.MaxHeaderValueCount says otherwise; a server that raises it
	// hands them all to Extract. (Set through reflect: the module builds
	// with Go 1.26 too, whose Server has no such field.)
	if f := reflect.ValueOf(srv.Config).Elem().FieldByName("MaxHeaderValueCount"); f.IsValid() {
		f.SetInt(2 * lines)
	}
	srv.Start()
	defer srv.Close()
	req, err := http.NewRequest("GET", srv.URL, nil)
	require.NoError(t, err)
	req.Header["Baggage"] = append(make([]string, 0, lines), "tenant=acme")
	for len(req.Header["Baggage"]) < lines {
		req.Header["Baggage"] = append(req.Header["Baggage"], "a=1")
	}
	start := time.Now()
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	t.Logf("%d header lines answered in %v (a figure, not a check)", lines, time.Since(start))
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	srv.Client().CloseIdleConnections()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "tenant set: false", string(body))
	require.Len(t, errs(), 1)
	assert.ErrorIs(t, errs()[0], baggagevars.ErrLimit)

	quiet := newPropagator() // no hook whose slice grows as it collects
	// The fewest of three counts, and within a few: under -race, sync.Pool
	// drops items at random, and fmt allocates anew (once 4 more for the
	// many lines than for the few, in .ci/run). Joining the lines as they
	// come, as Extract did, made an allocation per line.
	allocs := func(n int) float64 {
		carrier := propagation.HeaderCarrier{"Baggage": req.Header["Baggage"][:n]}
		fewest := math.Inf(1)
		for range 3 {
			fewest = min(fewest, testing.AllocsPerRun(5, func() { quiet.Extract(context.Background(), carrier) }))
		}
		return fewest
	}
	few, many := allocs(3000), allocs(lines)
	assert.InDelta(t, few, many, 3, "Extract's work does not grow past the size limit")
	assert.Less(t, many, 100.0, "allocations for %d lines", lines)
}

// BenchmarkExtract extracts a header of many lines, with ours and with
// OpenTelemetry's propagator.
func BenchmarkExtract(b *testing.B) {
	for _, lines := range []int{10, 60000} {
		vals := make([]string, lines)
		for i := range vals {
			vals[i] = "a=1"
		}
		vals[0] = "tenant=acme"
		carrier := propagation.HeaderCarrier{"Baggage": vals}
		for _, impl := range []struct {
			name string
			p    propagation.TextMapPropagator
		}{{"baggagevars", newPropagator()}, {"otel", propagation.Baggage{}}} {
			b.Run(fmt.Sprintf("lines=%d/impl=%s", lines, impl.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					impl.p.Extract(context.Background(), carrier)
				}
			})
		}
	}
}

// TestInject_reportsCarrierHeader: a header already in the carrier that is
// over the size limit cannot be kept, and says so.
func TestInject_reportsCarrierHeader(t *testing.T) {
	p, errs := hooked()
	carrier := propagation.MapCarrier{"baggage": "big=" + strings.Repeat("x", 9000)}
	inNew(t, func() {
		tenant.Set("acme")
		p.Inject(context.Background(), carrier)
	})
	assert.Equal(t, "tenant=acme", carrier.Get("baggage"))
	require.Len(t, errs(), 1)
	assert.True(t, errors.Is(errs()[0], baggagevars.ErrLimit), "%v", errs()[0])
}

// FuzzBaggageInject builds baggage of many sizes around a chosen var: the
// header Inject writes is always within the limits, a plain OpenTelemetry
// receiver reads all of it, the chosen var arrives whenever it fits on its
// own, and a report is made exactly when members were dropped.
func FuzzBaggageInject(f *testing.F) {
	f.Add(uint8(0), uint16(0), uint16(4))
	f.Add(uint8(64), uint16(1), uint16(4))
	f.Add(uint8(100), uint16(80), uint16(100))
	f.Add(uint8(1), uint16(8182), uint16(4))
	f.Add(uint8(3), uint16(10), uint16(8190))
	p := baggagevars.New(baggagevars.String(tenant, "tenant"))
	f.Fuzz(func(t *testing.T, nOthers uint8, otherSize, tenantSize uint16) {
		b := baggage.Baggage{}
		total := 0 // members in all, ours included
		for i := range int(nOthers) {
			var err error
			b, err = b.SetMember(member(t, fmt.Sprintf("o%03d", i), strings.Repeat("x", int(otherSize%9000))))
			require.NoError(t, err)
			total++
		}
		value := strings.Repeat("a", int(tenantSize%9000))
		if value != "" {
			total++
		}
		before := p.Errors()
		carrier := propagation.MapCarrier{}
		require.NoError(t, contextvars.New().Run(func() error {
			if value != "" {
				tenant.Set(value)
			}
			p.Inject(baggage.ContextWithBaggage(context.Background(), b), carrier)
			return nil
		}))
		h := carrier.Get("baggage")
		require.LessOrEqual(t, len(h), 8192, "header size")
		got := received(carrier)
		require.LessOrEqual(t, got.Len(), 64, "members")
		require.Equal(t, len(strings.Split(h, ",")), max(got.Len(), 1), "the receiver reads every member written")
		if value != "" && len("tenant=")+len(value) <= 8192 {
			assert.Equal(t, value, got.Member("tenant").Value(), "the chosen var fits alone: it arrives")
		}
		assert.Equal(t, got.Len() < total, p.Errors() > before, "reported exactly when dropped (%d of %d sent)", got.Len(), total)
	})
}
