// Package pprofvars labels CPU profiles (and goroutine profiles) with the
// values of chosen contextvars vars: a goroutine running in a
// [contextvars.Context] carries runtime/pprof labels named for the vars,
// set on entering the Run and restored on leaving it, so that `go tool pprof
// -tagfocus tenant=acme` shows where one tenant's requests spend their CPU.
//
// It is a [contextvars.SwitchHook], registered once at start-up:
//
//	remove := contextvars.OnSwitch(pprofvars.Labels(tenant, route))
//	defer remove()
//
// A program that registers no hook keeps its pprof labels as they are: the
// contextvars package never touches them itself.
package pprofvars

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime/pprof"

	"github.com/go-contextvars/contextvars"
)

// Labels returns a switch hook that sets the pprof labels of a goroutine
// entering a context to the values the chosen vars have there (a var with
// no value there gets no label), formatted with fmt's %v and named by the
// vars' names; and, on leaving it, to the labels of the context it returns
// to. Leaving a goroutine's outermost Run clears them, and so does
// [contextvars.DropImplicit] (as httpvars.Handler calls it at the end of a
// request), so that a keep-alive goroutine waiting for its next request
// keeps no labels of the last one.
//
// While the hook is registered it owns the labels of every goroutine that
// switches contexts: Go gives no way to read the labels a goroutine has, so
// a switch replaces them whole. Labels the program set itself — with
// pprof.SetGoroutineLabels or pprof.Do before a Run, or with pprof.Do
// inside a Run around a nested Run — are replaced by the vars' labels at
// the switch, and not restored when the Run returns (pprof.Do restores its
// own when it returns). Labels set with pprof.Do inside the innermost Run,
// around code that enters no other context, are kept. To label by a value,
// make it a var and pass it here.
//
// The labels are those of the values at entry: a var set inside the Run
// changes them at the next switch. Goroutines started inside a Run inherit
// its labels, as pprof labels always are.
//
// Register the hook at start-up and keep it. Removed while a goroutine is
// inside a Run, it is still called when that Run returns, if it was called
// when the Run began; but a goroutine whose outermost Run began before the
// hook was registered, and ends after it was removed, keeps the labels the
// hook last set on it (at a nested switch) until its next switch, and so
// does one that drops its implicit context after the removal.
//
// Labels panics, with an error whose message starts "contextvars: ", if it
// is given no var or a nil one.
func Labels(keys ...contextvars.Key) contextvars.SwitchHook {
	if len(keys) == 0 {
		panic(errors.New("contextvars: pprofvars.Labels needs at least one var"))
	}
	for _, k := range keys {
		if k == nil || isNilVar(k) {
			panic(errors.New("contextvars: pprofvars.Labels given a nil var"))
		}
	}
	keys = append([]contextvars.Key(nil), keys...)
	return func(_, to *contextvars.Context) {
		pprof.SetGoroutineLabels(labelsOf(to, keys))
	}
}

// labelsOf returns a context.Context carrying the labels of keys' values in
// c (none for a nil c).
func labelsOf(c *contextvars.Context, keys []contextvars.Key) context.Context {
	ctx := context.Background()
	if c == nil {
		return ctx
	}
	var kv []string
	for _, k := range keys {
		if v, ok := c.Get(k); ok {
			kv = append(kv, k.Name(), fmt.Sprint(v))
		}
	}
	if len(kv) == 0 {
		return ctx
	}
	return pprof.WithLabels(ctx, pprof.Labels(kv...))
}

// isNilVar reports whether k is a nil *Var of some type.
func isNilVar(k contextvars.Key) bool {
	v := reflect.ValueOf(k)
	return v.Kind() == reflect.Pointer && v.IsNil()
}
