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
// On the client side, [Propagator.Transport] adds the chosen vars to
// outgoing requests; on the server side, [Propagator.Handler], middleware
// of the shape func(http.Handler) http.Handler, sets them in the request's
// context before the handler runs. Both read and set vars by the rule of
// contextvars.LookupContext: code sees the context it runs in (an errgroup
// task run through contextvars.WrapErr sends its own vars), and the
// contextvars.Context a context.Context carries is used only by code that
// runs in none (or, for a var it lacks, only in an implicit context).
//
// Members that other code put in the baggage, through OpenTelemetry's
// baggage package, are kept in both directions: Inject merges the baggage
// header already in the carrier, the baggage of the context.Context and
// the chosen vars; and members this package extracts appear in
// baggage.FromContext too. In a composite propagator, put a Propagator
// after propagation.Baggage{}, whose Inject writes the header over.
//
// # Limits
//
// The baggage header is parsed by OpenTelemetry (go.opentelemetry.io/otel/baggage),
// whose receivers keep at most 64 members and drop a header of more than
// 8192 bytes whole. Inject writes a header within those limits: the chosen
// vars come first, and members the Propagator does not own are dropped
// before any of them; a chosen var is dropped only if the chosen vars
// alone do not fit. Extract reads no further than 8192 bytes of header,
// however many header lines a request has.
//
// # Errors
//
// Bad input never stops a request, and nothing is dropped silently: a
// header that does not parse, in whole or in part, a header over the
// limits, a value that does not decode for its var's type, a value that
// does not encode, members Inject dropped to stay within the limits — the
// vars concerned stay unset or unsent, and the error goes to the
// Propagator's error hook ([Propagator.SetErrorHandler]) and is counted
// ([Propagator.Errors]); drops for the limits wrap [ErrLimit]. With no hook
// set, the Propagator logs the error to slog.Default() at level Warn: its
// first, then at most one a second, with the count so far and the error's
// text cut to 512 bytes (it may quote the header's values, which come from
// another service or a client). (The hook is
// the Propagator's own rather than OpenTelemetry's global otel.Handle,
// whose package would bring OpenTelemetry's metric and log APIs into every
// program that uses this one; p.SetErrorHandler(otel.Handle) forwards to it.)
package baggagevars

import (
	"cmp"
	"context"
	"encoding"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"

	"github.com/go-contextvars/contextvars"
	"github.com/go-contextvars/contextvars/httpvars"
)

// baggageHeader is the W3C Baggage header, which OpenTelemetry's Baggage
// propagator also uses.
const baggageHeader = "baggage"

// The limits of W3C Baggage (https://www.w3.org/TR/baggage/#limits) that
// OpenTelemetry's baggage.Parse and propagation.Baggage enforce on the
// receiving side: a header (all its lines joined with commas) of more than
// maxBytes is dropped whole, and members after the maxMembers-th are
// dropped. A sender that exceeds them loses members at random, or all.
const (
	maxMembers = 64
	maxBytes   = 8192
)

// ErrLimit is wrapped by the errors a [Propagator] reports for baggage over
// the limits of W3C Baggage as OpenTelemetry enforces them (64 members,
// 8192 bytes): a header Extract does not read, members Inject drops.
var ErrLimit = errors.New("contextvars: baggagevars: baggage over the limits of 64 members and 8192 bytes")

// A Field ties a var to the baggage key it travels under, and says how its
// values are written as text and read back. Make one with [String], [Text]
// or [Func].
type Field struct {
	key string
	v   contextvars.Key

	// encode returns the value of the var for code on the calling
	// goroutine with ctx (contextvars.LookupContext) as text; ok is false
	// if the var is not set.
	encode func(ctx context.Context) (text string, ok bool, err error)
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
// (time.Time, netip.Addr and the like). A type whose MarshalText has a
// pointer receiver (big.Int) fits neither Var[big.Int] nor Var[*big.Int]:
// give Func its encoding.
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
	if !isToken(key) {
		// OpenTelemetry's baggage accepts any UTF-8 key in-process, but
		// writes only W3C tokens into a header: a var under another key
		// would never travel, and nothing would say so.
		panic(fmt.Errorf("contextvars: baggagevars: bad baggage key %q: a W3C baggage key is a token (letters, digits and !#$%%&'*+-.^_`|~)", key))
	}
	return Field{
		key: key,
		v:   v,
		encode: func(ctx context.Context) (string, bool, error) {
			y, ok := contextvars.LookupContext(ctx, v)
			if !ok {
				return "", false, nil
			}
			x, _ := y.(T) // y is nil for a nil interface value
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

// isToken reports whether key is a W3C baggage key: a token of RFC 9110,
// one or more of the characters below.
func isToken(key string) bool {
	if key == "" {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// A Propagator is a propagation.TextMapPropagator for the vars of its
// fields. Its methods may be called from any goroutine. A nil *Propagator
// propagates nothing: Inject writes nothing, Extract returns ctx, Errors
// returns 0; its SetErrorHandler panics.
type Propagator struct {
	fields  []Field
	onError atomic.Pointer[func(error)]
	errors  atomic.Int64
	logged  atomic.Int64 // when logError last logged, in ns since logEpoch, plus 1; 0: never
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
// on: a baggage header that does not parse or is over the limits, a value
// that does not decode for its var, a value that does not encode, members
// Inject dropped to stay within the limits ([ErrLimit]). handle may be
// called from many goroutines at once. With no handler set, or after
// SetErrorHandler(nil), p logs the errors to slog.Default() at level Warn,
// the first and then at most one a second, with the number of errors so
// far; a handler that does nothing (func(error) {}) silences them. To send
// the errors to OpenTelemetry's global error handler, pass otel.Handle.
func (p *Propagator) SetErrorHandler(handle func(error)) {
	if p == nil {
		panic(errors.New("contextvars: baggagevars: SetErrorHandler on a nil *Propagator"))
	}
	if handle == nil {
		p.onError.Store(nil)
		return
	}
	p.onError.Store(&handle)
}

// Errors returns the number of errors p has met; see [Propagator.SetErrorHandler].
func (p *Propagator) Errors() int64 {
	if p == nil {
		return 0
	}
	return p.errors.Load()
}

// report counts err and hands it to the error handler, or logs it if there
// is none.
func (p *Propagator) report(err error) {
	n := p.errors.Add(1)
	if h := p.onError.Load(); h != nil {
		(*h)(err)
		return
	}
	p.logError(err, n)
}

// logError is the error handler of a Propagator that has none: it logs err,
// p's n-th error, to slog.Default() at level Warn, unless p logged one less
// than a second ago. So the first error of a program that set no handler is
// seen, and a flood of them (every request over the limits) costs one line
// a second.
//
// Time is read on the monotonic clock (since logEpoch), which no change of
// the wall clock moves; a time earlier than the last line's (a synctest
// bubble's clock, which has no monotonic reading) logs rather than waiting.
// The error's text, which may quote a header's values, is cut to
// maxLogged bytes: a header comes from another service, or a client.
func (p *Propagator) logError(err error, n int64) {
	now := int64(time.Since(logEpoch)) + 1
	last := p.logged.Load()
	if last != 0 && now >= last && now-last < int64(time.Second) || !p.logged.CompareAndSwap(last, now) {
		return
	}
	msg := err.Error()
	if len(msg) > maxLogged {
		msg = strings.ToValidUTF8(msg[:maxLogged], "") + "…"
	}
	slog.Default().Warn("contextvars: baggagevars: a var was not propagated, or a header not read (SetErrorHandler to handle these)",
		"err", msg, "errors", n)
}

// logEpoch is the base of Propagator.logged's times.
var logEpoch = time.Now()

// maxLogged is the most bytes of an error's text logError logs.
const maxLogged = 512

// Fields returns the header Inject sets: baggage.
func (p *Propagator) Fields() []string { return []string{baggageHeader} }

// Inject writes the carrier's baggage header: the chosen vars that are
// set, for code on the calling goroutine with ctx (by the rule of
// contextvars.LookupContext: from the goroutine's current context, or, if
// it runs in none, from the contextvars.Context that ctx carries), merged
// with the members already in the carrier's baggage header and those of
// OpenTelemetry's baggage in ctx. A member of ctx's baggage replaces one of
// the header with its key, as OpenTelemetry's own propagator would write
// it; a chosen var that is set replaces both.
//
// The header stays within the limits receivers enforce (see the package
// doc): the chosen vars are written first, in the order of p's fields, and
// the other members after them, by key, as many as fit; those that do not
// are dropped and reported ([ErrLimit]).
//
// Inject does nothing if p or carrier is nil; a nil ctx is taken as
// context.Background().
func (p *Propagator) Inject(ctx context.Context, carrier propagation.TextMapCarrier) {
	if p == nil || carrier == nil {
		return
	}
	if ctx == nil {
		ctx = context.Background()
	}
	var ours []baggage.Member
	for _, f := range p.fields {
		s, ok, err := f.encode(ctx)
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
		ours = append(ours, m)
	}

	// The others: the header already in the carrier (another
	// propagator's, or one the caller forwards), then ctx's baggage over
	// it, less the members the chosen vars replace.
	others := map[string]baggage.Member{}
	h, within := readHeader(carrier)
	if !within {
		p.report(fmt.Errorf("%w: the carrier's baggage header, dropped", ErrLimit))
	} else if h != "" {
		b, err := baggage.Parse(h)
		if err != nil {
			p.report(fmt.Errorf("contextvars: baggagevars: the carrier's baggage header: %w", err))
		}
		for _, m := range b.Members() {
			others[m.Key()] = m
		}
	}
	for _, m := range baggage.FromContext(ctx).Members() {
		others[m.Key()] = m
	}
	for _, m := range ours {
		delete(others, m.Key())
	}
	rest := make([]baggage.Member, 0, len(others))
	for _, m := range others {
		rest = append(rest, m)
	}
	slices.SortFunc(rest, func(a, b baggage.Member) int { return cmp.Compare(a.Key(), b.Key()) })

	var w headerWriter
	var dropped []string
	for _, m := range ours {
		if !w.add(m) {
			dropped = append(dropped, m.Key())
		}
	}
	droppedOurs := len(dropped)
	for _, m := range rest {
		if !w.add(m) {
			dropped = append(dropped, m.Key())
		}
	}
	if len(dropped) > 0 {
		p.report(limitError(dropped, droppedOurs))
	}
	if w.n > 0 || !within {
		// Over the limit, the carrier's header is dropped as reported,
		// also when nothing replaces it.
		carrier.Set(baggageHeader, w.b.String())
	}
}

// headerWriter writes a baggage header member by member, within the
// limits.
type headerWriter struct {
	b strings.Builder
	n int // members written
}

// add writes m and reports whether it fit within the limits. A member
// OpenTelemetry cannot write (a key that is not a W3C token, which its
// baggage package accepts in-process) is skipped as OpenTelemetry's own
// propagator skips it, and counts as written.
func (w *headerWriter) add(m baggage.Member) bool {
	s := m.String()
	if s == "" {
		return true
	}
	size := len(s)
	if w.n > 0 {
		size++ // the comma before it
	}
	if w.n == maxMembers || w.b.Len()+size > maxBytes {
		return false
	}
	if w.n > 0 {
		w.b.WriteByte(',')
	}
	w.b.WriteString(s)
	w.n++
	return true
}

// limitError returns the error for the members Inject dropped: keys,
// whose first nOurs are the keys of chosen vars. It names at most a few.
func limitError(keys []string, nOurs int) error {
	const named = 5
	list := strings.Join(keys[:min(len(keys), named)], ", ")
	if len(keys) > named {
		list += fmt.Sprintf(" and %d more", len(keys)-named)
	}
	if nOurs == 0 {
		return fmt.Errorf("%w: dropped %d members the Propagator does not own: %s", ErrLimit, len(keys), list)
	}
	return fmt.Errorf("%w: dropped %d members, %d of them chosen vars that do not fit even alone: %s",
		ErrLimit, len(keys), nOurs, list)
}

// readHeader returns the carrier's baggage header, its lines joined with
// commas (as OpenTelemetry's propagator reads a carrier that has
// Values), and whether it is within maxBytes. It reads no further than
// maxBytes, however many lines there are: a request can carry tens of
// thousands within net/http's default limit of 1 MiB of headers.
func readHeader(carrier propagation.TextMapCarrier) (header string, within bool) {
	vg, ok := carrier.(propagation.ValuesGetter)
	if !ok {
		header = carrier.Get(baggageHeader)
		return header, len(header) <= maxBytes
	}
	lines := vg.Values(baggageHeader)
	if len(lines) == 1 {
		return lines[0], len(lines[0]) <= maxBytes
	}
	var b strings.Builder
	for i, line := range lines {
		size := len(line)
		if i > 0 {
			size++
		}
		if b.Len()+size > maxBytes {
			return "", false
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(line)
	}
	return b.String(), true
}

// extracted is the context.Context key of the setters Extract found, a
// []setter.
type extracted struct{}

// setter sets var v to a value Extract found.
type setter struct {
	v   contextvars.Key
	set func()
}

// Extract reads the carrier's baggage and returns a copy of ctx that holds
// the values of the chosen vars found there, for [Apply] (or
// [Propagator.Handler]) to set, and whose OpenTelemetry baggage
// (baggage.FromContext) has the carrier's members added. Extract sets no
// var itself: a propagator may run on a goroutine other than the one that
// handles the request.
//
// A header over 8192 bytes, all its lines together, is not read at all (as
// OpenTelemetry's propagator does not read it) and is reported
// ([ErrLimit]); reading stops there, so the cost of Extract does not grow
// with the number of header lines.
//
// Extract returns ctx if p or carrier is nil; a nil ctx is taken as
// context.Background().
func (p *Propagator) Extract(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	if ctx == nil {
		ctx = context.Background()
	}
	if p == nil || carrier == nil {
		return ctx
	}
	header, within := readHeader(carrier)
	if !within {
		p.report(fmt.Errorf("%w: baggage header over %d bytes, not read", ErrLimit, maxBytes))
		return ctx
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
	var sets []setter
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
		sets = append(sets, setter{f.v, set})
	}
	// Merge into ctx's OpenTelemetry baggage, the carrier's members
	// winning, as OpenTelemetry's propagator would leave them.
	merged := baggage.FromContext(ctx)
	if merged.Len() == 0 {
		merged = b
	} else {
		for _, m := range b.Members() {
			if next, err := merged.SetMember(m); err == nil {
				merged = next
			}
		}
	}
	ctx = baggage.ContextWithBaggage(ctx, merged)
	if len(sets) > 0 {
		if prev, ok := ctx.Value(extracted{}).([]setter); ok {
			// Newest first: where ctx goes through Extract more than
			// once, the last carrier's value wins, as it does in its
			// OpenTelemetry baggage; within one, the first field.
			sets = append(sets, prev...)
		}
		ctx = context.WithValue(ctx, extracted{}, sets)
	}
	return ctx
}

// Apply sets, in the calling goroutine's current context, the vars whose
// values Extract found in ctx and that have no value there yet, and reports
// how many it set. Call it inside the request's own context (a
// contextvars.Context.Run), never on a goroutine that serves more than one
// request outside one: [Propagator.Handler] does it for you.
//
// A caller's baggage fills in; it never replaces a value this process set
// for the request. Baggage is input from the caller, as untrusted as any
// header: a var that a middleware set before Apply (say, the user an
// authentication middleware found) keeps its value whatever the caller
// sends under its key, in whichever order the middleware and
// [Propagator.Handler] are chained. A default ([contextvars.NewVarWithDefault])
// is not a value: baggage replaces it. Where a var is set for the request
// only if the caller sent none (a request id made up where none came), do
// it inside Propagator.Handler, where the caller's value is already set.
//
// Apply(nil) sets nothing and returns 0.
func Apply(ctx context.Context) int {
	if ctx == nil {
		return 0
	}
	sets, _ := ctx.Value(extracted{}).([]setter)
	n := 0
	for _, s := range sets { // newest Extract first (see Extract)
		if _, ok := contextvars.Lookup(s.v); !ok {
			s.set()
			n++
		}
	}
	return n
}

// Handler returns an http.Handler that serves each request with next in a
// context of its own, as httpvars.Handler does (it is httpvars.Handler
// around next), with the vars p extracts from the request's baggage header
// set in it: a copy of the context current when Handler is called, with the
// serving goroutine's context at the request's arrival over it, and the
// baggage's vars for those of the chosen vars that neither sets (see
// [Apply]: a caller's baggage never replaces what this process set). The request's context.Context carries that
// context (contextvars.FromContext) and the extracted OpenTelemetry baggage.
// Like httpvars.Handler, it drops what the serving goroutine set outside
// any Run when the request ends.
//
// Handler has the shape of middleware, func(http.Handler) http.Handler (as
// the method value p.Handler), and nests with httpvars.Handler in either
// order.
//
// Handler panics if p or next is nil.
func (p *Propagator) Handler(next http.Handler) http.Handler {
	if p == nil || next == nil {
		panic(errors.New("contextvars: baggagevars: Propagator.Handler: nil Propagator or http.Handler"))
	}
	return httpvars.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// httpvars runs this in the request's new context, which
		// r.Context() carries.
		ctx := p.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		Apply(ctx)
		next.ServeHTTP(w, r.WithContext(ctx))
	}))
}

// Transport returns an http.RoundTripper that writes p's vars into each
// request's baggage header ([Propagator.Inject]) and sends it with base
// (http.DefaultTransport if base is nil). The vars are those of the code
// that sends the request, by the rule of contextvars.LookupContext:
// http.Client.Do calls RoundTrip on the caller's goroutine, so a request
// sent from a goroutine that runs in a context (an errgroup task run
// through contextvars.WrapErr) carries that context's vars, and one sent
// from a goroutine that runs in none carries those of the
// contextvars.Context its context.Context carries.
//
// The request base is given carries the header's members also as the
// OpenTelemetry baggage of its context.Context, so that a base that
// injects baggage itself (otelhttp.NewTransport with OpenTelemetry's
// propagation.Baggage) sends the chosen vars too, in either order.
//
// Transport panics if p is nil.
func (p *Propagator) Transport(base http.RoundTripper) http.RoundTripper {
	if p == nil {
		panic(errors.New("contextvars: baggagevars: Propagator.Transport: nil Propagator"))
	}
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{p: p, base: base}
}

// transport is what Propagator.Transport returns.
type transport struct {
	p    *Propagator
	base http.RoundTripper
}

// CloseIdleConnections closes the idle connections of the RoundTripper
// Transport was given, if it has that method (as *http.Transport has): an
// http.Client's CloseIdleConnections calls it only on a Transport that has
// it, and so reaches the base through this one.
func (t *transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// RoundTrip sends a clone of r with p's vars in its baggage header; a
// RoundTripper must not change the request it is given.
func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r == nil {
		return nil, errors.New("contextvars: baggagevars: nil *http.Request")
	}
	ctx := r.Context()
	r = r.Clone(ctx)
	t.p.Inject(ctx, propagation.HeaderCarrier(r.Header))
	// The request's context.Context gets the header's members as its
	// OpenTelemetry baggage, so that an injector base calls (otelhttp's
	// Transport, with propagation.Baggage{}) writes the vars again
	// rather than writing the header anew from ctx's baggage alone.
	if h := r.Header.Get(baggageHeader); h != "" {
		if b, err := baggage.Parse(h); err == nil {
			r = r.WithContext(baggage.ContextWithBaggage(ctx, b))
		}
	}
	return t.base.RoundTrip(r)
}
