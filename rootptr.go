package contextvars

// This file holds rootPtr, a Context's atomic pointer to its trie, which a
// new Context can be given by a plain store instead of an atomic one. It is
// one of the package's three uses of unsafe, each behind one small function
// for a layout or ordering that Go's types cannot state: rootOf here,
// bindingOf in token.go (a leaf is the first field of its binding) and
// node.kid0 in hamt.go (an inner node's kids follow it in its allocation).
// This one saves CopyContext and Context.Copy an atomic exchange each
// (bench/RESULTS.md, "Before and after the codebase rework");
// TestUnsafe_rootOf checks, under -race, that the plain store is ordered
// before other goroutines' loads.

import (
	"sync/atomic"
	"unsafe"
)

// rootPtr is an atomic pointer to a trie root, like atomic.Pointer[node],
// except that a rootPtr not yet visible to other goroutines can be given
// its first value by a composite literal (rootOf) instead of an atomic
// store. CopyContext and Copy make a context per call; on amd64 an atomic
// store of a pointer is an XCHG, a tenth of their cost.
//
// The zero rootPtr holds nil. Load may be called from any goroutine; Store
// only by the goroutine that owns the context (see "Ownership" in
// context.go); rootOf only for a context that no other goroutine can see
// yet. A context reaches another goroutine only through a synchronizing
// operation (a channel, a mutex, go), which orders rootOf's plain store
// before any Load there.
type rootPtr struct {
	p unsafe.Pointer // *node
}

// rootOf returns a rootPtr holding n, for a new Context's literal.
func rootOf(n *node) rootPtr { return rootPtr{unsafe.Pointer(n)} }

// Load returns the root.
func (r *rootPtr) Load() *node { return (*node)(atomic.LoadPointer(&r.p)) }

// Store publishes n as the root. The store synchronizes before any Load
// that observes it.
func (r *rootPtr) Store(n *node) { atomic.StorePointer(&r.p, unsafe.Pointer(n)) }
