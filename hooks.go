package contextvars

// This file holds switch hooks: code that runs when a goroutine enters or
// leaves a Context (Kotlin's ThreadContextElement, CPython 3.14's context
// watchers). With none registered, entering and leaving a Run cost one
// atomic load more.

import (
	"slices"
	"sync"
	"sync/atomic"
)

// A SwitchHook is called on a goroutine that switches contexts through
// [Context.Run] or [Call] (and so [Go], [Wrap] and the like): on entering,
// with from the goroutine's previous current context (nil if it had none)
// and to the entered one; on leaving, with from the left context and to the
// restored one (nil when leaving the goroutine's outermost Run). It runs on
// that goroutine, before fn on entering and after fn on leaving, also when
// fn panics or calls runtime.Goexit, so it sees the vars of to with
// [Var.In]. It must not enter or leave contexts itself, and should not
// panic; if it panics or calls runtime.Goexit (t.FailNow in a test), the
// Run still undoes its switch on the way out, calling every hook for
// leaving, and leaves nothing entered.
//
// A Run calls on leaving the hooks it called on entering, also those
// removed meanwhile, so that a hook can undo what it did for the entry,
// and those registered meanwhile.
//
// A Set outside any Run, which makes the goroutine's implicit context, is
// not a switch. But from (entering a goroutine's first Run) and to (leaving
// it) may be that implicit context, which no Run can enter, on any
// goroutine ([ErrAlreadyEntered]): it is current on its goroutine whenever
// that goroutine is outside any Run. A hook that keeps it should keep a
// Copy. Dropping it ([DropImplicit]) is a switch from it to nil; where
// DropImplicit ran inside a Run, leaving the outermost Run is a switch to
// nil, not to the dropped context. (Where a hook calls DropImplicit as the
// outermost Run is left, the hooks after it are told nil, but those before
// it were told the implicit context, and are not called again.)
type SwitchHook func(from, to *Context)

// switchHooks is the registered hooks, nil if none: Run loads it once on
// entering and once on leaving (see leaveHooks).
var switchHooks atomic.Pointer[hookList]

// hooksMu serializes OnSwitch and its remove funcs.
var hooksMu sync.Mutex

// hookList is an immutable list of registered hooks.
type hookList struct {
	hooks []*SwitchHook
}

// call calls each hook of l.
func (l *hookList) call(from, to *Context) {
	for _, h := range l.hooks {
		(*h)(from, to)
	}
}

// callEach calls the hooks of l from the i-th on, each also if one before
// it panics or calls runtime.Goexit (the last panic goes on after): for
// dropping an implicit context, a switch that must reach every hook.
func (l *hookList) callEach(i int, from, to *Context) {
	if i >= len(l.hooks) {
		return
	}
	defer l.callEach(i+1, from, to)
	(*l.hooks[i])(from, to)
}

// leaveHooks returns the hooks a Run calls on leaving: those it called on
// entering (entered), removed since or not, so that a hook that set
// something for the entry (pprofvars' labels) also undoes it, and those
// registered since (now), in the order they were registered. Either list
// may be nil.
func leaveHooks(entered, now *hookList) []*SwitchHook {
	switch {
	case entered == now || entered == nil:
		return now.list()
	case now == nil:
		return entered.list()
	}
	hooks := slices.Clone(entered.hooks)
	for _, h := range now.hooks {
		if !slices.Contains(entered.hooks, h) {
			hooks = append(hooks, h)
		}
	}
	return hooks
}

// list returns l's hooks; nil for a nil l.
func (l *hookList) list() []*SwitchHook {
	if l == nil {
		return nil
	}
	return l.hooks
}

// OnSwitch registers h, to be called at every switch of contexts by any
// goroutine from now on, and returns a func that unregisters it (calling it
// again does nothing). Hooks are called in the order they were registered.
// A program that registers none sees no change and pays one atomic load per
// Run. OnSwitch panics, with an error whose message starts "contextvars: ",
// if h is nil.
//
// Hooks apply to the whole process: register them at start-up, as a
// profiler or tracer is. The subpackage pprofvars has one that labels CPU
// profiles with chosen vars.
func OnSwitch(h SwitchHook) (remove func()) {
	if h == nil {
		panic(errNilFunc)
	}
	p := &h
	hooksMu.Lock()
	defer hooksMu.Unlock()
	next := &hookList{}
	if l := switchHooks.Load(); l != nil {
		next.hooks = slices.Clone(l.hooks)
	}
	next.hooks = append(next.hooks, p)
	switchHooks.Store(next)
	return func() {
		hooksMu.Lock()
		defer hooksMu.Unlock()
		l := switchHooks.Load()
		if l == nil {
			return
		}
		i := slices.Index(l.hooks, p)
		if i < 0 {
			return
		}
		if len(l.hooks) == 1 {
			switchHooks.Store(nil)
			return
		}
		switchHooks.Store(&hookList{hooks: slices.Delete(slices.Clone(l.hooks), i, i+1)})
	}
}
