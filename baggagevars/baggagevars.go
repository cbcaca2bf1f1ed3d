// Package baggagevars carries chosen context vars across process
// boundaries as W3C Baggage (the baggage header), through OpenTelemetry's
// propagation: the values a request carries in one service (request id,
// tenant, user, locale, feature flags) are set in the services it calls.
//
// The user chooses what travels: each [Field] ties a var to its baggage
// key. Nothing else travels. A [Propagator] is a
// propagation.TextMapPropagator, so it composes with OpenTelemetry's own:
//
//	p := baggagevars.New(
//		baggagevars.String(tenant, "tenant"),
//		baggagevars.Text(userID, "user.id"), // a type with MarshalText/UnmarshalText
//	)
//	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(
//		propagation.TraceContext{}, propagation.Baggage{}, p))
//
// On the client side, [Transport] adds the chosen vars of the caller's
// context to outgoing requests; on the server side, [Handler] sets them in
// the request's context before the handler runs. Members that other code put
// in the baggage, through OpenTelemetry's baggage package, are kept in both
// directions, and members this package extracts appear in
// baggage.FromContext too. In a composite propagator, put a Propagator after
// propagation.Baggage{}, whose Inject writes the header over: ours adds to
// what it wrote.
//
// The baggage header is parsed by OpenTelemetry (go.opentelemetry.io/otel/baggage),
// with its limits (8192 bytes, 64 members). Bad input never stops a
// request: a header that does not parse, in whole or in part, a value that
// does not decode for its var's type — the vars concerned stay unset, and
// the error goes to the Propagator's error hook ([Propagator.SetErrorHandler])
// and is counted ([Propagator.Errors]).
package baggagevars

import (
	"context"
	"encoding"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"

	"github.com/go-contextvars/contextvars"
)

// baggageHeader is the W3C Baggage header, which OpenTelemetry's Baggage
// propagator also uses.
const baggageHeader = "baggage"

// A Field ties a var to the baggage key it travels under, and says how its
// values are written as text and read back. Make one with [String], [Text]
// or [Func].
type Field struct {
	key string
	v   contextvars.Key

	// encode returns the value of the var in c (the caller's current
	// context if c is nil) as text; ok is false if the var is not set.
	encode func(c *contextvars.Context) (text string, ok bool, err error)
	// decode reads text and returns a func that sets the var to it in
	// the calling goroutine's current context.
	decode func(text string) (set func(), err error)
}

// Key returns the baggage key of f.
func (f Field) Key() string { return f.key }

// Var returns the var of f.
func (f Field) Var() contextvars.Key { return f.v }

// String returns a Field for a var of strings, which travel as they are.
func String(v *contextvars.Var[string], key string) Field {
	return Func(v, key, func(s string) (string, error) { return s, nil },
		func(s string) (string, error) { return s, nil })
}

// Text returns a Field for a var whose type implements
// encoding.TextMarshaler and, through its pointer, encoding.TextUnmarshaler
// (time.Time, netip.Addr, big.Int and the like).
func Text[T encoding.TextMarshaler, PT interface {
	*T
	encoding.TextUnmarshaler
}](v *contextvars.Var[T], key string) Field {
	return Func(v, key,
		func(x T) (string, error) {
			b, err := x.MarshalText()
			return string(b), err
		},
		func(s string) (T, error) {
			var x T
			err := PT(&x).UnmarshalText([]byte(s))
			return x, err
		})
}

// Func returns a Field for a var of any type, with the functions that write
// its values as text and read them back.
//
// Func panics if v is nil, key is not a valid baggage key, or encode or
// decode is nil.
func Func[T any](v *contextvars.Var[T], key string, encode func(T) (string, error), decode func(string) (T, error)) Field {
	switch {
	case v == nil:
		panic(errors.New("contextvars: baggagevars: nil var"))
	case encode == nil || decode == nil:
		panic(errors.New("contextvars: baggagevars: nil encode or decode func"))
	}
	if _, err := baggage.NewMemberRaw(key, ""); err != nil {
		panic(fmt.Errorf("contextvars: baggagevars: bad baggage key %q: %v", key, err))
	}
	return Field{
		key: key,
		v:   v,
		encode: func(c *contextvars.Context) (string, bool, error) {
			var x T
			var ok bool
			if c != nil {
				x, ok = v.In(c)
			} else if y, set := contextvars.Lookup(v); set {
				x, _ = y.(T) // y is nil for a nil interface value
				ok = true
			}
			if !ok {
				return "", false, nil
			}
			s, err := encode(x)
			return s, err == nil, err
		},
		decode: func(s string) (func(), error) {
			x, err := decode(s)
			if err != nil {
				return nil, err
			}
			return func() { v.Set(x) }, nil
		},
	}
}

// A Propagator is a propagation.TextMapPropagator for the vars of its
// fields. Its methods may be called from any goroutine.
type Propagator struct {
	fields  []Field
	onError atomic.Pointer[func(error)]
	errors  atomic.Int64
}

var _ propagation.TextMapPropagator = (*Propagator)(nil)

// New returns a Propagator for fields. It panics if a field is the zero
// Field or two fields share a key.
func New(fields ...Field) *Propagator {
	seen := map[string]bool{}
	for _, f := range fields {
		if f.v == nil {
			panic(errors.New("contextvars: baggagevars.New: zero Field"))
		}
		if seen[f.key] {
			panic(fmt.Errorf("contextvars: baggagevars.New: two fields with key %q", f.key))
		}
		seen[f.key] = true
	}
	return &Propagator{fields: append([]Field(nil), fields...)}
}

// SetErrorHandler makes p call handle with each error it meets from then
// on: a baggage header that does not parse, a value that does not decode
// for its var, a value that does not encode. handle may be called from many
// goroutines at once; nil removes it.
func (p *Propagator) SetErrorHandler(handle func(error)) {
	if handle == nil {
		p.onError.Store(nil)
		return
	}
	p.onError.Store(&handle)
}

// Errors returns the number of errors p has met; see [Propagator.SetErrorHandler].
func (p *Propagator) Errors() int64 { return p.errors.Load() }

// report counts err and hands it to the error handler.
func (p *Propagator) report(err error) {
	p.errors.Add(1)
	if h := p.onError.Load(); h != nil {
		(*h)(err)
	}
}

// Fields returns the header Inject sets: baggage.
func (p *Propagator) Fields() []string { return []string{baggageHeader} }

// Inject adds the chosen vars that are set to the carrier's baggage: from
// the contextvars.Context that ctx carries (contextvars.WithContext), or else
// from the calling goroutine's current context. Members already in the
// carrier's baggage header, and those of OpenTelemetry's baggage in ctx,
// are kept; a member with one of the fields' keys is replaced by the var's
// value.
func (p *Propagator) Inject(ctx context.Context, carrier propagation.TextMapCarrier) {
	c, _ := contextvars.FromContext(ctx)
	var members []baggage.Member
	for _, f := range p.fields {
		s, ok, err := f.encode(c)
		if err != nil {
			p.report(fmt.Errorf("contextvars: baggagevars: encoding %s: %w", f.key, err))
		}
		if !ok {
			continue
		}
		m, err := baggage.NewMemberRaw(f.key, s)
		if err != nil {
			p.report(fmt.Errorf("contextvars: baggagevars: %s: %w", f.key, err))
			continue
		}
		members = append(members, m)
	}
	if len(members) == 0 {
		return
	}
	// What is there already: the header another propagator wrote, else
	// the baggage of ctx (which OpenTelemetry's propagator would write).
	b := baggage.FromContext(ctx)
	if h := carrier.Get(baggageHeader); h != "" {
		if parsed, err := baggage.Parse(h); err == nil || parsed.Len() > 0 {
			b = parsed
		}
	}
	for _, m := range members {
		next, err := b.SetMember(m)
		if err != nil {
			p.report(fmt.Errorf("contextvars: baggagevars: %s: %w", m.Key(), err))
			continue
		}
		b = next
	}
	if s := b.String(); s != "" {
		carrier.Set(baggageHeader, s)
	}
}

// extracted is the context.Context key of the setters Extract found.
type extracted struct{}

// Extract reads the carrier's baggage and returns a copy of ctx that holds
// the values of the chosen vars found there, for [Apply] (or [Handler]) to
// set, and whose OpenTelemetry baggage (baggage.FromContext) has the
// carrier's members added. Extract sets no var itself: a propagator may run
// on a goroutine other than the one that handles the request.
func (p *Propagator) Extract(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	var header string
	if vg, ok := carrier.(propagation.ValuesGetter); ok {
		for i, v := range vg.Values(baggageHeader) {
			if i > 0 {
				header += ","
			}
			header += v
		}
	} else {
		header = carrier.Get(baggageHeader)
	}
	if header == "" {
		return ctx
	}
	b, err := baggage.Parse(header)
	if err != nil {
		// The members before the error, if any, are in b.
		p.report(fmt.Errorf("contextvars: baggagevars: baggage header: %w", err))
	}
	if b.Len() == 0 {
		return ctx
	}
	var sets []func()
	for _, f := range p.fields {
		m := b.Member(f.key)
		if m.Key() == "" {
			continue
		}
		set, err := f.decode(m.Value())
		if err != nil {
			p.report(fmt.Errorf("contextvars: baggagevars: decoding %s: %w", f.key, err))
			continue
		}
		sets = append(sets, set)
	}
	// Merge into ctx's OpenTelemetry baggage, the carrier's members
	// winning, as OpenTelemetry's propagator would leave them.
	merged := baggage.FromContext(ctx)
	for _, m := range b.Members() {
		if next, err := merged.SetMember(m); err == nil {
			merged = next
		}
	}
	ctx = baggage.ContextWithBaggage(ctx, merged)
	if len(sets) > 0 {
		if prev, ok := ctx.Value(extracted{}).([]func()); ok {
			sets = append(append([]func(){}, prev...), sets...)
		}
		ctx = context.WithValue(ctx, extracted{}, sets)
	}
	return ctx
}

// Apply sets, in the calling goroutine's current context, the vars whose
// values Extract found in ctx, and reports how many it set. Call it inside
// the request's own context (a contextvars.Context.Run), never on a
// goroutine that serves more than one request outside one: [Handler] does
// it for you.
func Apply(ctx context.Context) int {
	sets, _ := ctx.Value(extracted{}).([]func())
	for _, set := range sets {
		set()
	}
	return len(sets)
}

// Handler returns an http.Handler that extracts p's vars from each request's
// baggage header and runs next with them set, in a new copy of the context
// current when the request arrives — inside the httpvars middleware, the
// request's own; the request's context.Context carries that copy
// (contextvars.FromContext) and the extracted OpenTelemetry baggage.
//
// Handler panics if p or next is nil.
func Handler(p *Propagator, next http.Handler) http.Handler {
	if p == nil || next == nil {
		panic(errors.New("contextvars: baggagevars.Handler: nil Propagator or http.Handler"))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := p.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		c := contextvars.CopyContext()
		_ = c.Run(func() error { // c is new: Run cannot fail
			Apply(ctx)
			next.ServeHTTP(w, r.WithContext(contextvars.WithContext(ctx, c)))
			return nil
		})
	})
}

// Transport returns an http.RoundTripper that adds p's vars to each
// request's baggage header, from the contextvars.Context the request's
// context.Context carries, or else from the calling goroutine's current
// context (http.Client.Do calls RoundTrip on the caller's goroutine), and
// sends it with base (http.DefaultTransport if base is nil).
//
// Transport panics if p is nil.
func Transport(p *Propagator, base http.RoundTripper) http.RoundTripper {
	if p == nil {
		panic(errors.New("contextvars: baggagevars.Transport: nil Propagator"))
	}
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{p: p, base: base}
}

// transport is what Transport returns.
type transport struct {
	p    *Propagator
	base http.RoundTripper
}

// RoundTrip sends a clone of r with p's vars in its baggage header; a
// RoundTripper must not change the request it is given.
func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r == nil {
		return nil, errors.New("contextvars: baggagevars: nil *http.Request")
	}
	r = r.Clone(r.Context())
	t.p.Inject(r.Context(), propagation.HeaderCarrier(r.Header))
	return t.base.RoundTrip(r)
}
