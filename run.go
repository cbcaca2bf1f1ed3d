package contextvars

// This file holds Run and Call: how a goroutine enters a context, making it
// current, and leaves it. (Go, which runs its fn in a Run, is in
// contextvars.go.)
//
// Invariant: a Run restores the goroutine's previous context and releases c's
// ownership flag (context.go) on every way out of fn (return, panic,
// runtime.Goexit), since exit is deferred before anything else runs, switch
// hooks included, and exit restores whatever its own hooks do; and the
// goroutine's outermost Run frees its state, unless the goroutine holds an
// implicit context, so that scoped use leaves nothing in the registry.

import "sync/atomic"

// Run makes c the calling goroutine's current context for the duration of
// fn, and then restores the previous one: Python's Context.run. Every
// [Var.Set] and [Var.Reset] that fn makes, directly or in calls, changes c
// and is visible in c afterwards, but not outside it. Run returns fn's error.
//
// If c is already entered, by this goroutine or by another, Run does not
// call fn and returns an error e with errors.Is(e, [ErrAlreadyEntered]).
// Running a different context inside fn nests as expected.
//
// The previous context is restored also when fn panics, and the panic goes
// on unchanged: Run does not recover it and hand it back as an error, which
// would change the stack a crash prints and hide the panic from the
// caller's own recover. It is restored too when fn calls runtime.Goexit,
// since the goroutine's deferred calls, which may read vars, still run.
//
// A goroutine's outermost Run leaves nothing behind when it returns, unless
// the goroutine holds an implicit context (see [Var.Set]).
func (c *Context) Run(fn func() error) error {
	gs, prev, err := c.begin(fn == nil)
	if err != nil {
		return err
	}
	hs := switchHooks.Load()
	defer c.exit(gs, prev, hs)
	if hs != nil {
		gs.callHooks(hs, prev, c)
	}
	return fn()
}

// Call is [Context.Run] for a function that returns a value: it runs fn with
// c as the calling goroutine's current context and returns fn's results.
// It is Python's ctx.run(callable) with a return value.
func Call[T any](c *Context, fn func() (T, error)) (T, error) {
	gs, prev, err := c.begin(fn == nil)
	if err != nil {
		var zero T
		return zero, err
	}
	hs := switchHooks.Load()
	defer c.exit(gs, prev, hs)
	if hs != nil {
		gs.callHooks(hs, prev, c)
	}
	return fn()
}

// runFresh runs fn in c, which no goroutine has entered: Go, Wrap and
// Pull run their funcs in contexts they have just made, so Run cannot fail.
func (c *Context) runFresh(fn func()) {
	_ = c.Run(func() error { fn(); return nil })
}

// begin checks the arguments of Run and Call, then makes c the calling
// goroutine's current context and returns the goroutine's state and the
// context it replaced; see "Ownership" in context.go. (One function, not
// a check and an enter, so that an outermost Run, whose cost is mostly
// its three locked instructions, pays as few calls as it can.) The state comes
// first, so that a context entered for the first time takes its id in the
// compare-and-swap that enters it (tryEnterAs), and its first Set does not
// pay an atomic operation more for it.
func (c *Context) begin(nilFunc bool) (gs *gstate, prev *Context, err error) {
	if c == nil {
		return nil, nil, errNilContext
	}
	if nilFunc {
		return nil, nil, errNilFunc
	}
	gs = stateOrClaim()
	if !c.tryEnterAs(gs) {
		if gs.current == nil {
			// Claimed for this Run, which does not happen.
			reg.free(gs, atomic.LoadUint64(&gs.owner))
		}
		return nil, nil, errAlreadyEntered(c)
	}
	prev = gs.current
	gs.current = c
	return gs, prev, nil
}

// stateOrClaim returns the calling goroutine's state, claiming one if it
// has none (its current context is then nil until the caller sets it): the
// lookup's fast path inlined, the rest of the lookup and the claim in one
// call.
func stateOrClaim() *gstate {
	id := goroutineID()
	if gs := reg.atHome(id); gs != nil {
		return gs
	}
	return reg.lookupOrClaim(id)
}

// switchTo makes c, whose ownership flag the caller holds, the calling
// goroutine's current context, and returns the goroutine's state and the
// context it replaced. The caller defers exit, and only then calls the
// switch hooks.
func (c *Context) switchTo() (gs *gstate, prev *Context) {
	gs = stateOrClaim()
	prev = gs.current
	gs.current = c
	return gs, prev
}

// exit undoes begin's switch, after calling the switch hooks for leaving:
// those called on entering (entered, nil if none) and those registered
// since. It runs deferred, so on return, panic and Goexit alike.
// (exitHooked passes hooksCalled: no hook is called again.)
func (c *Context) exit(gs *gstate, prev *Context, entered *hookList) {
	if entered != hooksCalled {
		if now := switchHooks.Load(); now != nil || entered != nil {
			c.exitHooked(gs, prev, leaveHooks(entered, now))
			return
		}
	} else {
		gs.hookCtx = nil
	}
	if prev == nil {
		// The goroutine's outermost Run, and it has no implicit
		// context: nothing of its state is worth keeping.
		c.leaveBeforeFree()
		reg.free(gs, atomic.LoadUint64(&gs.owner))
		return
	}
	c.leave()
	gs.current = prev
	if gs.cached {
		// The cache may hold c's tries, which c's holder may drop.
		gs.clearCache()
	}
	if gs.dropPending && prev == gs.implicit {
		// DropImplicit was called inside this, the outermost Run.
		reg.free(gs, atomic.LoadUint64(&gs.owner))
	}
}

// exitHooked is exit with hooks: it calls each of them, then does exit's
// work, also if a hook panics or calls runtime.Goexit, so that no hook can
// leave c entered, the goroutine's state behind, or a later hook uncalled.
func (c *Context) exitHooked(gs *gstate, prev *Context, hooks []*SwitchHook) {
	defer c.exit(gs, prev, hooksCalled) // clears hookCtx
	gs.hookCtx, gs.hooked = prev, true
	c.callLeave(hooks, gs, prev)
}

// hooksCalled is exit's sign that the hooks have been called.
var hooksCalled = new(hookList)

// callLeave calls hooks[0], then the rest, also if it panics or calls
// runtime.Goexit (a panic goes on after them). Each is told where the
// goroutine goes: prev, or nil where the outermost Run will drop the
// implicit context prev, which a hook before it may have asked for
// (DropImplicit).
func (c *Context) callLeave(hooks []*SwitchHook, gs *gstate, prev *Context) {
	if len(hooks) == 0 {
		return
	}
	defer c.callLeave(hooks[1:], gs, prev)
	to := prev
	if gs.dropPending && prev == gs.implicit {
		to = nil // dropped by exit: the goroutine goes back to none
	}
	(*hooks[0])(c, to)
}
