package contextvars_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/go-contextvars/contextvars"
)

// TestSeams_moreHostileInput: bad input to the API beyond TestHostileInput.
// Each call must return an error starting "contextvars: ", panic with one,
// or be harmless; never a nil-pointer dereference.
func TestSeams_moreHostileInput(t *testing.T) {
	var nilVar *contextvars.Var[int]
	var zeroVar contextvars.Var[int]
	var nilCtx *contextvars.Context
	ctxWith := contextvars.WithContext(context.Background(), contextvars.New())
	cases := map[string]func() error{
		"Merge(nil, nil)":            func() error { _ = contextvars.Merge(nil, nil).Len(); return nil },
		"Merge(nil ctx, new)":        func() error { _ = contextvars.Merge(nilCtx, contextvars.New()); return nil },
		"RunWith(nil)":               func() error { return contextvars.RunWith(nil) },
		"RunWith(Bind(nil))":         func() error { return contextvars.RunWith(func() error { return nil }, contextvars.Bind(nilVar, 1)) },
		"RunWith(zero Binding)":      func() error { return contextvars.RunWith(func() error { return nil }, contextvars.Binding{}) },
		"RunWith(Bind(zero Var))":    func() error { return contextvars.RunWith(func() error { return nil }, contextvars.Bind(&zeroVar, 1)) },
		"RunFrom(nil, fn)":           func() error { return contextvars.RunFrom(nil, func() error { return nil }) }, //nolint:staticcheck
		"RunFrom(ctx, nil)":          func() error { return contextvars.RunFrom(ctxWith, nil) },
		"RunFrom(bare ctx, fn)":      func() error { return contextvars.RunFrom(context.Background(), func() error { return nil }) },
		"LookupContext(nil, nil)":    func() error { contextvars.LookupContext(nil, nil); return nil },    //nolint:staticcheck
		"LookupContext(nil, nilVar)": func() error { contextvars.LookupContext(nil, nilVar); return nil }, //nolint:staticcheck
		"Lookup(nilVar)":             func() error { contextvars.Lookup(nilVar); return nil },
		"Wrap(nil)":                  func() error { contextvars.Wrap(nil); return nil },
		"WrapErr(nil)":               func() error { contextvars.WrapErr(nil); return nil },
		"Pull(nil)":                  func() error { contextvars.Pull[int](nil); return nil },
		"Pull2(nil)":                 func() error { contextvars.Pull2[int, int](nil); return nil },
		"GoIn(nil, fn)":              func() error { return contextvars.GoIn(nil, func() {}) },
		"GoIn(c, nil)":               func() error { return contextvars.GoIn(contextvars.New(), nil) },
		"OnSwitch(nil)":              func() error { contextvars.OnSwitch(nil); return nil },
		"nilVar.InheritNone":         func() error { nilVar.InheritNone(); return nil },
		"nilVar.InheritWith":         func() error { nilVar.InheritWith(func(i int) int { return i }); return nil },
		"nilVar.InheritValue":        func() error { nilVar.InheritValue(); return nil },
		"v.InheritWith(nil)":         func() error { contextvars.NewVar[int]("x").InheritWith(nil); return nil },
		"zeroVar.InheritWith + Go": func() error {
			var zv contextvars.Var[int]
			zv.InheritWith(func(i int) int { return i + 1 })
			zv.Set(1)
			done := make(chan int)
			contextvars.Go(func() { g, _ := zv.Get(); done <- g })
			zv.InheritValue()
			if g := <-done; g != 2 {
				return errors.New("review: a zero Var's InheritWith rule was not applied")
			}
			return nil
		},
		"WithContext(ctx, zero Context)": func() error { contextvars.WithContext(context.Background(), &contextvars.Context{}); return nil },
		"FromContext(typed nil in ctx)": func() error {
			ctx := context.WithValue(context.Background(), struct{}{}, nil)
			contextvars.FromContext(ctx)
			return nil
		},
		"Key of zero var in Context.Get": func() error { var zv contextvars.Var[int]; contextvars.New().Get(&zv); return nil },
		"Token.Var of zero-Var token": func() error {
			var zv contextvars.Var[int]
			tok := zv.Set(3)
			if tok.Var() != &zv {
				panic("review: token of zero var has the wrong var")
			}
			return tok.Reset()
		},
	}
	for name, call := range cases {
		t.Run(name, func(t *testing.T) {
			err, recovered := runIsolated(call)
			if recovered != nil {
				perr, ok := recovered.(error)
				if !ok || !strings.HasPrefix(perr.Error(), "contextvars: ") {
					t.Errorf("panicked with %v", recovered)
				}
				return
			}
			if err != nil && !strings.HasPrefix(err.Error(), "contextvars: ") {
				t.Errorf("error %q", err)
			}
		})
	}
}
