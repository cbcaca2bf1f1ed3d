package contextvars

// This file hands the caller's vars to code that runs on goroutines the
// package does not start: worker pools, errgroup, sync.WaitGroup.Go,
// time.AfterFunc, and the goroutine behind iter.Pull.

import "iter"

// Wrap returns a func that runs fn in a copy of the calling goroutine's
// current context, taken when Wrap is called. Each call of the returned func
// runs in a fresh copy of that snapshot, so calls on many goroutines at once
// never collide, and what fn sets is seen neither by the caller of Wrap nor
// by the next call. Vars with an inheritance rule ([Var.InheritNone],
// [Var.InheritWith]) follow it in each call's copy. It is the counterpart of TC39's AsyncContext.Snapshot.wrap
// and Node's AsyncLocalStorage.bind, and drops into the APIs that take a
// func():
//
//	wg.Go(contextvars.Wrap(work))
//	time.AfterFunc(d, contextvars.Wrap(tick))
//	pool.Submit(contextvars.Wrap(job))
//
// Wrap panics if fn is nil.
func Wrap(fn func()) func() {
	if fn == nil {
		panic(errNilFunc)
	}
	snap := CopyContext()
	return func() { childOf(snap).runFresh(fn) }
}

// WrapErr is [Wrap] for a func that returns an error, such as
// errgroup.Group.Go takes:
//
//	g.Go(contextvars.WrapErr(fetch))
//
// WrapErr panics if fn is nil.
func WrapErr(fn func() error) func() error {
	if fn == nil {
		panic(errNilFunc)
	}
	snap := CopyContext()
	return func() error { return childOf(snap).Run(fn) }
}

// Pull is iter.Pull for a sequence that reads vars: iter.Pull runs the
// sequence on a goroutine of its own, which would start with an empty
// context; Pull runs it in a copy of the caller's current context, taken
// when Pull is called.
//
// What still differs from a Python generator, which runs in the context of
// whoever calls next() at each step: the sequence sees the vars as they were
// when Pull was called, not as they are at each next; what it sets stays in
// its copy instead of reaching the caller; and a token made by the caller
// cannot be reset inside it ([ErrTokenContext]), nor the other way round.
//
// Pull panics if seq is nil.
func Pull[V any](seq iter.Seq[V]) (next func() (V, bool), stop func()) {
	if seq == nil {
		panic(errNilFunc)
	}
	c := childOf(current())
	return iter.Pull(func(yield func(V) bool) {
		c.runFresh(func() { seq(yield) })
	})
}

// Pull2 is [Pull] for an iter.Seq2, as iter.Pull2 is for iter.Pull.
func Pull2[K, V any](seq iter.Seq2[K, V]) (next func() (K, V, bool), stop func()) {
	if seq == nil {
		panic(errNilFunc)
	}
	c := childOf(current())
	return iter.Pull2(func(yield func(K, V) bool) {
		c.runFresh(func() { seq(yield) })
	})
}
