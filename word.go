package contextvars

// This file holds word, a uint64 that goroutines share, with the one store
// sync/atomic lacks: a release store, which orders the writes before it
// (and the reads) ahead of the stored value, and nothing after it.
//
// On amd64, sync/atomic's stores are XCHG instructions, which lock the bus
// and wait for the core's store buffer to drain: about 6 ns on the machines
// bench/RESULTS.md was measured on, a fifth of a scoped Set. The x86 memory
// model (x86-TSO: Sewell et al., "x86-TSO: A Rigorous and Usable
// Programmer's Model for x86 Multiprocessors", CACM 53(7), 2010) already
// keeps every plain store behind the loads and stores before it, so a plain
// MOV is a release store; storeRelease is that MOV, in assembly
// (word_amd64.s), which the compiler cannot reorder the package's own
// memory operations across, as a call it does not see into. Under the race
// detector, which does not see assembly, with the purego build tag, and on
// other architectures (arm64's atomic store is already STLR, a release), it
// is sync/atomic's store.
//
// Invariant: StoreRelease is used only where one goroutine at a time writes
// the word (the owner of a context, or of a token's Reset), and where no
// load of the writer after the store can be ordered before it, as x86 would
// order a load it has not waited for: a locked instruction of the package's
// follows before the writer's own code or its caller's runs on (Reset's
// claim or root store after consume; registry.free after the outermost
// Run's leaveBeforeFree), or every load that could depend on the store
// waits for it (a freeze spins while editBusy is set, and an in-place write
// took effect at claim's compare-and-swap). Elsewhere a caller could see
// the outcome sequentially consistent atomics rule out ("store
// buffering": TestWord_leaveIsSequentiallyConsistent): after a Run returns,
// its caller's load of a word another goroutine stored before trying to
// enter the context misses that store, and the other goroutine still finds
// the context entered. So a nested Run's leave stays sync/atomic's.

import "sync/atomic"

// A word is a uint64 read and changed atomically, by any goroutine, with
// StoreRelease for a writer that is the word's only one meanwhile.
type word struct {
	// The zero-length array gives word atomic.Uint64's alignment, 8 bytes
	// also on 32-bit platforms, where a plain uint64 field may fall on a
	// 4-byte boundary, which 64-bit atomic instructions refuse.
	_ [0]atomic.Uint64
	v uint64
}

// Load returns w's value.
func (w *word) Load() uint64 { return atomic.LoadUint64(&w.v) }

// Store sets w to v, as sync/atomic does: ordered before the caller's later
// loads too.
func (w *word) Store(v uint64) { atomic.StoreUint64(&w.v, v) }

// StoreRelease sets w to v, ordered after the caller's earlier reads and
// writes but not before its later reads (see the file comment for when
// that is enough). A load that observes v, on any goroutine, synchronizes
// with it, as with Store.
func (w *word) StoreRelease(v uint64) { storeRelease(&w.v, v) }

// CompareAndSwap sets w to new if it holds old, and reports whether it did.
func (w *word) CompareAndSwap(old, new uint64) bool {
	return atomic.CompareAndSwapUint64(&w.v, old, new)
}

// Or sets the bits of mask in w.
func (w *word) Or(mask uint64) { atomic.OrUint64(&w.v, mask) }

// And clears the bits of w that are not in mask.
func (w *word) And(mask uint64) { atomic.AndUint64(&w.v, mask) }
