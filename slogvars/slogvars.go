// Package slogvars adds the values of chosen context vars to every log
// record: the structlog.contextvars.merge_contextvars of Go's log/slog.
//
//	requestID := contextvars.NewVar[string]("request_id")
//	logger := slog.New(slogvars.NewHandler(slog.NewJSONHandler(os.Stdout, nil), requestID))
//	...
//	requestID.Set("r-42")
//	logger.InfoContext(ctx, "served") // {"msg":"served","request_id":"r-42",...}
//
// The values are those of the context the logging code runs in; see
// [Handler].
package slogvars

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"

	"github.com/go-contextvars/contextvars"
)

// Handler is a slog.Handler that adds, to each record it passes on, an
// attribute for each of its vars that is set, named for the var
// (contextvars.Key.Name). The values are those of the code that logs, by
// the rule of contextvars.LookupContext: code sees the context it runs in.
// If the logging goroutine runs in a context (a request's, through the
// httpvars middleware; an errgroup task's, through contextvars.WrapErr),
// the values come from it, whatever the record's context.Context carries:
// a task that set a var of its own logs it with InfoContext(gctx, ...) as
// with Info(...). Only if the goroutine runs in none (a plain go statement,
// http.TimeoutHandler's goroutine), or only in an implicit context that
// lacks the var, do they come from the
// contextvars.Context that the record's context.Context carries
// (contextvars.WithContext; the httpvars middleware puts one in
// r.Context()). A var that is not set there adds nothing; its default is
// not logged, as in structlog.
//
// The attributes are added to the record, so a handler made by WithGroup
// puts them in its group, as it does the record's own attributes; a
// Handler made by [Handler.TopLevel] puts them at the top level instead,
// outside every group. An
// attribute the code logs itself wins over a var of the same name: a
// record's own attribute with that key, or one given to WithAttrs since
// the last WithGroup (also inside a group without a key, which handlers
// write inline), keeps the var's value out, so that no line has one key
// twice.
//
// A zero Handler has no next handler: it is not enabled at any level, and
// its Handle returns an error.
type Handler struct {
	next slog.Handler
	vars []contextvars.Key

	// explicit holds the keys given to WithAttrs since the last
	// WithGroup (nil if none), or, in a top-level Handler, before the
	// first: they are in the same group as the vars'.
	explicit map[string]bool

	// topLevel: the vars go at the top level of each record. Then next
	// has opened none of groups, the groups opened since (WithGroup),
	// each with the attrs given to WithAttrs after it; chained is next
	// with them, for records that add no var. Never changed once made:
	// WithGroup and WithAttrs copy.
	topLevel bool
	groups   []group
	chained  slog.Handler
}

// group is a group a top-level Handler opened, and the attrs given to it:
// one slice per WithAttrs call, resolved (as log/slog's handlers resolve
// them once, at the call), so that replaying them per record gives what
// the calls gave.
type group struct {
	name  string
	calls [][]slog.Attr
}

// resolved returns attrs with their LogValuers resolved, in groups too.
func resolved(attrs []slog.Attr) []slog.Attr {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		a.Value = a.Value.Resolve()
		if a.Value.Kind() == slog.KindGroup {
			a.Value = slog.GroupValue(resolved(a.Value.Group())...)
		}
		out[i] = a
	}
	return out
}

var _ slog.Handler = (*Handler)(nil)

// NewHandler returns a Handler that passes records to next with the values
// of vars added. It panics if next or a var is nil, if a var has an empty
// name (a zero Var, or NewVar("")), which would make an attribute without
// a key, or if two vars have one name, which would make two attributes
// with one key.
func NewHandler(next slog.Handler, vars ...contextvars.Key) *Handler {
	if next == nil {
		panic(errors.New("contextvars: slogvars.NewHandler: nil slog.Handler"))
	}
	names := make(map[string]bool, len(vars))
	for _, v := range vars {
		switch {
		case v == nil || reflect.ValueOf(v).IsNil(): // a nil interface, or a nil *Var in one
			panic(errors.New("contextvars: slogvars.NewHandler: nil var"))
		case v.Name() == "":
			panic(errors.New("contextvars: slogvars.NewHandler: a var with an empty name; name it with contextvars.NewVar"))
		case names[v.Name()]:
			panic(fmt.Errorf("contextvars: slogvars.NewHandler: two vars named %q", v.Name()))
		}
		names[v.Name()] = true
	}
	return &Handler{next: next, vars: append([]contextvars.Key(nil), vars...)}
}

// Enabled reports whether the next handler handles records at level.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	if h == nil || h.next == nil {
		return false
	}
	return h.grouped().Enabled(ctx, level)
}

// TopLevel returns a Handler like h that adds the vars' attributes at the
// top level of every record, outside any group opened with WithGroup (and
// so outside the groups h has opened), so that a query on a var's key finds
// every line: {"msg":"query","request_id":"r-1","db":{"rows":3}} from
// logger.WithGroup("db"). (Groups h has already passed on, if h was made by
// WithGroup, stay around the vars.) A var named as the outermost group the
// logger opens is left out, so that no line has one key twice. For a
// record that adds vars, after a WithGroup, the next handler is given the
// vars and then the groups and their attributes again (WithAttrs,
// WithGroup, with LogValuers resolved once, when the logger was made),
// which costs what those calls cost, each time (a ReplaceAttr sees the
// groups' attributes again too): with one group and two attributes over
// the JSON handler, about 11 allocations and 330 ns more per record. A
// zero h gives a zero Handler.
func (h *Handler) TopLevel() *Handler {
	if h == nil {
		return nil
	}
	c := *h // groups h passed on to its next handler stay there
	c.topLevel = true
	return &c
}

// grouped returns the next handler with the groups a top-level h opened.
func (h *Handler) grouped() slog.Handler {
	if len(h.groups) > 0 {
		return h.chained
	}
	return h.next
}

// Handle adds the values of h's vars that are set to r and passes it on.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if h == nil || h.next == nil {
		return errors.New("contextvars: slogvars: Handle on a zero Handler; make one with NewHandler")
	}
	if len(h.groups) > 0 {
		return h.handleInGroups(ctx, r)
	}
	cloned := false
	var own map[string]bool // the record's own keys, read at the first var set
	for _, k := range h.vars {
		v, ok := contextvars.LookupContext(ctx, k)
		if !ok || h.explicit[k.Name()] {
			continue
		}
		if own == nil {
			own = make(map[string]bool, r.NumAttrs())
			r.Attrs(func(a slog.Attr) bool { addKeys(own, a); return true })
		}
		if own[k.Name()] {
			continue
		}
		if !cloned {
			// The record's attributes may be shared with its other
			// copies: add to a clone.
			r, cloned = r.Clone(), true
		}
		r.AddAttrs(slog.Any(k.Name(), v))
	}
	return h.next.Handle(ctx, r)
}

// handleInGroups is Handle for a top-level Handler that has opened groups:
// the vars go to the next handler before the groups, which are opened
// again after them. The groups are the next handler's to format (nesting
// them in a group value of the record's would meet log/slog's handling of
// groups that come out empty).
func (h *Handler) handleInGroups(ctx context.Context, r slog.Record) error {
	var attrs []slog.Attr
	for _, k := range h.vars {
		name := k.Name()
		if h.explicit[name] || name == h.groups[0].name {
			continue
		}
		if v, ok := contextvars.LookupContext(ctx, k); ok {
			attrs = append(attrs, slog.Any(name, v))
		}
	}
	if len(attrs) == 0 {
		return h.chained.Handle(ctx, r)
	}
	next := h.next.WithAttrs(attrs)
	for _, g := range h.groups {
		next = next.WithGroup(g.name)
		for _, call := range g.calls {
			next = next.WithAttrs(call)
		}
	}
	return next.Handle(ctx, r)
}

// addKeys adds to m the key of a, or, for a group without a key, whose
// attributes a handler writes inline, the keys of its attributes.
func addKeys(m map[string]bool, a slog.Attr) {
	if a.Key != "" {
		m[a.Key] = true
		return
	}
	if v := a.Value.Resolve(); v.Kind() == slog.KindGroup {
		for _, g := range v.Group() {
			addKeys(m, g)
		}
	}
}

// WithAttrs returns a Handler whose next handler has attrs (in a top-level
// Handler that has opened groups, a Handler that adds attrs to the
// innermost).
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if h == nil || h.next == nil {
		return h
	}
	if len(h.groups) > 0 {
		if len(attrs) == 0 {
			return h
		}
		attrs = resolved(attrs)
		c := *h
		c.groups = slices.Clone(h.groups)
		last := &c.groups[len(c.groups)-1]
		last.calls = append(slices.Clip(last.calls), attrs)
		c.chained = h.chained.WithAttrs(attrs)
		return &c
	}
	keys := map[string]bool{}
	for _, a := range attrs {
		addKeys(keys, a)
	}
	explicit, cloned := h.explicit, false
	for _, k := range h.vars {
		if keys[k.Name()] && !explicit[k.Name()] {
			if !cloned { // h's map is shared: change a copy
				explicit, cloned = maps.Clone(h.explicit), true
				if explicit == nil {
					explicit = map[string]bool{}
				}
			}
			explicit[k.Name()] = true
		}
	}
	return &Handler{next: h.next.WithAttrs(attrs), vars: h.vars, explicit: explicit, topLevel: h.topLevel}
}

// WithGroup returns a Handler whose next handler opens group name (in a
// top-level Handler, a Handler that opens it after the vars).
func (h *Handler) WithGroup(name string) slog.Handler {
	if h == nil || h.next == nil {
		return h
	}
	if h.topLevel {
		if name == "" {
			return h // as slog.Handler asks
		}
		c := *h
		c.groups = append(slices.Clip(h.groups), group{name: name})
		c.chained = h.grouped().WithGroup(name)
		return &c
	}
	return &Handler{next: h.next.WithGroup(name), vars: h.vars}
}
