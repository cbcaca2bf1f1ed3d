// Package contextvars is a Go port of Python's contextvars module (PEP 567):
// variables whose values follow the flow of execution, so that request IDs,
// tracing spans, tenants, locales or deadlines reach the code that needs
// them without being passed through every call.
//
// A [Var] is a key. Its value is looked up in the calling goroutine's current
// [Context], an immutable mapping from vars to values. [Var.Set] replaces the
// current context's mapping with a new one and returns a [Token] that
// [Var.Reset] takes to undo exactly that Set. [Context.Run] makes a context
// current for the length of a call and contains every Set made inside it.
// [CopyContext] snapshots the current context in O(1); a snapshot never
// changes under you.
//
//	var requestID = contextvars.NewVarWithDefault("request_id", "-")
//
//	func handle(id string) error {
//		return contextvars.New().Run(func() error {
//			requestID.Set(id)
//			return serve() // serve and everything it calls see id
//		})
//	}
//
// # Python to Go
//
//	Python                          Go
//	ContextVar(name)                NewVar[T](name)
//	ContextVar(name, default=d)     NewVarWithDefault(name, d)
//	var.name                        v.Name()
//	var.get()                       v.Get()           (ok=false: LookupError)
//	var.get(default)                v.GetOr(default)
//	var.set(value)                  v.Set(value)      returns *Token[T]
//	var.reset(token)                v.Reset(token)    or token.Reset()
//	with var.set(value): ...        defer v.Set(value).Reset()
//	token.var, token.old_value      t.Var(), t.OldValue() (ok=false: Token.MISSING)
//	Context()                       New()
//	copy_context()                  CopyContext()
//	ctx.run(f)                      c.Run(f), Call(c, f)
//	ctx.copy()                      c.Copy()
//	ctx[var], ctx.get(var)          c.Get(v), v.In(c) (ok=false: KeyError / None)
//	var in ctx                      c.Contains(v)
//	len(ctx)                        c.Len()
//	iter(ctx), keys, values, items  c.Keys(), c.Values(), c.All()
//	RuntimeError (entered)          ErrAlreadyEntered
//	RuntimeError (token used)       ErrTokenUsed
//	ValueError (token var/context)  ErrTokenVar, ErrTokenContext
//	threading.Thread + copy         Go(fn)
//	run_in_executor(None, ctx.run)  Wrap(f), WrapErr(f)
//
// # Go's ecosystem
//
// [WithContext] puts a Context into a context.Context and [FromContext]
// gets it back; [RunFrom] runs a function in a copy of it, for code that
// only receives a context.Context. [Wrap] and [WrapErr] hand the caller's
// vars to goroutines the package does not start (errgroup,
// sync.WaitGroup.Go, time.AfterFunc, worker pools), and [Pull] to the
// goroutine behind iter.Pull. The subpackages httpvars (a Context per
// net/http request), slogvars (vars in every log/slog record) and
// baggagevars (vars across services as W3C baggage) build on them, and
// middleware of one's own can use [Merge] and [DropImplicit] as httpvars
// does.
//
// Code sees the context it runs in. That is the one rule by which a
// goroutine that has both a current context and a context.Context carrying
// a *Context reads vars, and [LookupContext] is it: the current context
// wins, and the *Context that a context.Context carries is used only by
// code that runs in none (a plain go statement, http.TimeoutHandler's
// goroutine, a time.AfterFunc callback without Wrap), or, for a var it
// lacks, only in an implicit context. So an errgroup task
// run through WrapErr, which sets a var of its own, logs it and sends it
// to the services it calls although the context.Context it is given
// derives from the request's; and a goroutine inside some Run that is
// handed another request's context.Context reports the context it runs
// in, as Python code, which has no other place to look, always does. Every
// integration reads vars through LookupContext.
//
// # Goroutines
//
// Each goroutine has its own current context, as each Python thread does.
// Outside any Run, Get and Set act on the goroutine's implicit context, made
// by its first Set. A goroutine started with a plain go statement starts with
// an empty context; [Go] starts one inside a copy of the caller's current
// context, as asyncio does for tasks.
//
// A Context can be current on one goroutine at a time, and never twice on one:
// Run on a context that is already entered returns [ErrAlreadyEntered]. A
// Context's read methods are safe from any goroutine at any time.
//
// # Costs
//
// What the package keeps for a goroutine depends on how it was used. A Run
// (or Call) leaves nothing behind when the goroutine's outermost one returns,
// and neither does Go; that outermost Run claims and frees the goroutine's
// state, two atomic operations more than a nested one (on amd64, where its
// leave is a plain store, one locked instruction more: word.go). A Set
// outside any Run makes an implicit context, which lives until a sweep
// finds its goroutine gone: Go has no hook that runs when a goroutine
// exits, so a sweep lists the live goroutines with runtime.Stack, which
// stops the world for a time that grows with the number of goroutines. Sweeps run only when implicit contexts outnumber the live
// goroutines two to one and some goroutine has exited, and are paced so
// that their pauses take at most a tenth of the wall time; where a sweep is
// cheap (a thousand goroutines or so), a timer reclaims the contexts
// of exited goroutines within about a second. So memory stays bounded
// (twice the peak of goroutines, plus the implicit contexts made within one
// pacing interval), but a single sweep's pause grows with every goroutine in
// the process: in servers, run each request in a Run.
// With keep-alive, net/http serves many requests on one connection's
// goroutine, so a var a handler sets outside Run is seen by the next request
// on that connection. [ForbidImplicit] makes a test suite catch that, and
// [ReadStats] shows it in production. In a callback from a C thread (cgo),
// whose goroutine the runtime reuses for other threads, a Set outside Run
// panics with [ErrOutsideRun]: run the callback's body in a Run.
//
// Var.Get and a nested Context.Run take no lock and allocate nothing; a
// goroutine's outermost Run claims and frees its state with an atomic
// operation each, and takes a short lock only when another goroutine holds
// its registry bucket's slot. A Set of a var the context holds already changes the
// context's own binding in place and allocates nothing but its token, and
// not that where the token does not outlive the caller (see Var.Set); a Set
// of a new var, or the first after a copy, makes a binding and copies one
// node per trie level: one for up to 16 vars, two or three for a thousand.
// A context keeps only its current values alive: a value that was replaced
// is garbage once its token is. Goroutine identity comes from github.com/petermattis/goid;
// the package uses no go:linkname and leaves runtime/pprof labels alone
// unless a program registers a switch hook that sets them (pprofvars).
//
// # Errors
//
// Errors returned by this package have messages that start "contextvars: "
// and keep CPython's wording and reprs, less addresses (and a var's
// default), so that the logs of many requests group and grep by message:
//
//	contextvars: <Token var=<ContextVar name='user'>> was created in a different Context
//
// Test for the cases with errors.Is and the sentinels below. Calls that have no error result and are given a nil
// *Var or a nil func panic with an error whose message starts
// "contextvars: ".
package contextvars

import (
	"errors"
)

var (
	// ErrAlreadyEntered is returned by [Context.Run] and [Call] when the
	// context is already entered, by the calling goroutine or another one.
	// Python raises RuntimeError.
	ErrAlreadyEntered = errors.New("contextvars: context is already entered")

	// ErrTokenUsed is returned by [Var.Reset] and [Token.Reset] for a token
	// that has already been used to reset. Python raises RuntimeError.
	ErrTokenUsed = errors.New("contextvars: token has already been used once")

	// ErrTokenVar is returned by [Var.Reset] for a token made by another
	// var. Python raises ValueError.
	ErrTokenVar = errors.New("contextvars: token was created by a different ContextVar")

	// ErrTokenContext is returned by [Var.Reset] and [Token.Reset] for a
	// token made in a context other than the calling goroutine's current
	// one. Python raises ValueError.
	ErrTokenContext = errors.New("contextvars: token was created in a different Context")

	// ErrNilToken is returned by [Var.Reset] and [Token.Reset] for a nil or
	// zero token, one that no Set made. Python raises TypeError.
	ErrNilToken = errors.New("contextvars: nil token")

	// ErrNoContext is returned by [RunFrom] for a context.Context that
	// carries no *Context (see [WithContext]).
	ErrNoContext = errors.New("contextvars: the context.Context carries no *Context")

	// ErrOutsideRun is what [Var.Set] panics with, wrapped in an error that
	// names the var, when it is called outside any [Context.Run] where an
	// implicit context may not be made: while [ForbidImplicit] is on, and
	// in a cgo callback.
	ErrOutsideRun = errors.New("contextvars: Set outside any Run")
)

// Errors for other bad input. They are not sentinels of the API; their text
// says what was wrong.
var (
	errNilContext = errors.New("contextvars: nil *Context")
	errNilFunc    = errors.New("contextvars: nil func")
	errNilVar     = errors.New("contextvars: nil *Var")

	errNilStdContext = errors.New("contextvars: nil context.Context")
)

// cvError is an error with its own message that wraps a sentinel, so that
// errors.Is(err, sentinel) holds while the text reads like CPython's.
type cvError struct {
	sentinel error
	msg      string
}

func (e *cvError) Error() string { return e.msg }
func (e *cvError) Unwrap() error { return e.sentinel }

// errAlreadyEntered returns CPython's message for entering c, which is
// entered, wrapping ErrAlreadyEntered.
func errAlreadyEntered(c *Context) error {
	return &cvError{ErrAlreadyEntered, "contextvars: cannot enter context: " + c.String() + " is already entered"}
}

// tokenError returns the message for a refused Reset of a token of the var
// named name, wrapping sentinel: CPython's wording, with the token's repr
// (used tells whether it has been used) less its addresses and the var's
// default, so that the logs of many requests group and grep by it:
//
//	contextvars: <Token var=<ContextVar name='user'>> was created in a different Context
func tokenError(sentinel error, name string, used bool, what string) error {
	u := ""
	if used {
		u = " used"
	}
	return &cvError{sentinel, "contextvars: <Token" + u + " var=" + varRepr(name) + "> " + what}
}

// errNilTokenf returns an error wrapping ErrNilToken that says what was nil.
func errNilTokenf(what string) error {
	return &cvError{ErrNilToken, "contextvars: nil token: " + what}
}

// errInternal returns the error a broken invariant of the package panics
// with: a bug in the package, never the caller's doing.
func errInternal(what string) error {
	return errors.New("contextvars: internal error: " + what)
}

// Go calls fn in a new goroutine whose current context is a copy of the
// caller's, taken before Go returns: what the caller had set is visible to
// fn (but for vars with an inheritance rule: [Var.InheritNone],
// [Var.InheritWith]), and what fn sets is not visible to the caller. [GoIn]
// starts fn in a given context instead. It is the goroutine
// counterpart of Python's asyncio.create_task, which runs a task in a copy of
// the current context. Nothing of the new goroutine's state is left behind
// when fn returns, panics or calls runtime.Goexit.
//
// The copy is fn's for its whole life: a long-lived worker started with Go
// from inside a request runs in that request's vars for good. Start such a
// worker with a plain go statement and hand each task its own vars
// ([Wrap], [RunFrom]).
//
// Go panics if fn is nil.
func Go(fn func()) {
	if fn == nil {
		panic(errNilFunc)
	}
	c := childOf(current())
	go c.runFresh(fn)
}
