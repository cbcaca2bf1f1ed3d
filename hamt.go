package contextvars

// This file holds the trie behind every Context: a persistent hash array
// mapped trie (HAMT) from vars to leaves, after CPython's Python/hamt.c
// (get ~ hamt_find, set ~ hamt_assoc, delete ~ hamt_without; Phil Bagwell,
// "Ideal Hash Trees", 2001).
//
// # Ownership
//
// Invariant: no node reachable from a snapshot ever changes. A snapshot is
// a root taken by Context.Copy, CopyContext or an iteration (All, Keys,
// Values), and any root the trie's own set and delete (edit tag 0) are
// given; those copy the one root-to-leaf path they change and share the
// rest, so copying a map is copying its root pointer.
//
// Each inner node carries an edit tag (newInner), a number never used for
// anything else (context.go, "Edit tags"). A context's owner (the goroutine
// running in it: context.go, "Ownership") writes under the context's tag e
// with setIn and deleteIn, which change in place the inner nodes tagged e
// and copy the others, tagging the copies e. Only these may change:
//
//   - a kid slot of a node tagged e, to another kid for the same slot
//     (storeKid: a var's leaf replaced, or a kid subtree replaced by its
//     changed copy); a kid is never added or removed in place, so bitmaps,
//     list lengths and each node's set of keys never change;
//   - the size of a bitmap node tagged e (addSize), when a leaf is added or
//     removed beneath it;
//   - the value of a leaf tagged e (a leaf's word is its tag: token.go), by
//     a plain store (setValue).
//
// Only the context's owner changes them, inner nodes one atomic store at a
// time, so a reader on another goroutine (Context.Len, Contains) finds a
// whole trie on every load: each kid it loads is a complete subtree, old or
// new. A reader on another goroutine that reads a leaf's value
// (Context.Get, Var.In) first ends the tag, as a snapshot does
// (Context.valueLeaf), so that no value it reads is being changed.
// A snapshot loads the root, then ends the tag (Context.freeze), in O(1):
// the nodes tagged e are then shared and never change again, and the
// owner's next write takes a new tag and copies what it changes. Nodes
// tagged e are reachable only through nodes tagged e (a node made under an
// older tag was frozen before any node tagged e existed, and never changes
// after), so a write changes nodes in place only above the one node it
// replaces. A write that replaces a root tagged e (adding or removing a kid
// of the root) ends the tag as well (Context.release): a snapshot may have
// loaded the old root before that write, and the kids the new root shares
// with it are tagged e, so a later write under e would change them beneath
// the snapshot (TestContext_snapshotOfReplacedRoot).
//
// A leaf's key and word never change; its value only as above.
//
// A node is one of three kinds, told apart by its fields:
//
//	leaf    key != nil: one binding, the key a var's core. The trie reads
//	        and writes only inner nodes' words, so a leaf's word belongs
//	        to whoever made the leaf.
//	bitmap  key == nil, bitmap != 0: up to 32 kids, one per 5-bit chunk of
//	        the hash at its depth, stored densely in chunk order.
//	list    key == nil, bitmap == 0: two or more leaves, searched in order.
//	        At the root, up to flatMax vars of any hashes (a flat root);
//	        elsewhere, leaves that share one hash (a collision node; every
//	        var has a hash of its own, so only the tests make these).
//
// An inner node's edit tag and kids follow it in its allocation (newInner),
// so a path copy allocates once per level and a lookup touches one object
// per level.

import (
	"math/bits"
	"sync/atomic"
	"unsafe"
)

const (
	// bitsPerLevel is CPython's choice: 32-way nodes, so a uint32 bitmap
	// covers a node and a million vars are four levels deep.
	bitsPerLevel = 5
	levelMask    = 1<<bitsPerLevel - 1
	// maxShift is the first shift with no hash bits left. Two different
	// hashes always differ at some shift below it.
	maxShift = 64
	// flatMax is the most vars a root holds as a flat list (see setFlat),
	// CPython's bound for its small bitmap nodes. Most contexts hold a few
	// vars; in a trie, 10 vars with random hashes share a 5-bit chunk at
	// the root more often than not, so a Set copies two levels: 2 or 3
	// allocations, where a flat root always takes 2 (BenchmarkVarSet,
	// vars=10). A lookup scans at most 16 pointers in one node.
	flatMax = 16
)

// node is a leaf, bitmap or list node; see the file comment.
//
// Invariants: a bitmap node has popcount(bitmap) >= 1 kids, and a bitmap
// node with a single kid has a bitmap node as that kid (a lone leaf or
// collision node sits in its parent's slot); a list node holds size >= 2
// leaves; size is the number of leaves beneath an inner node. No empty node
// survives a delete: the empty map is the nil *node.
type node struct {
	word uint64   // an inner node's bitmap (low 32 bits) and size (high 32)
	key  *varCore // a leaf's var; nil in an inner node
}

// bitmap returns inner node n's bitmap: 0 for a list node. A bitmap never
// changes once its node is made, only a bitmap node's size does (addSize),
// so the word is loaded atomically.
func (n *node) bitmap() uint32 { return uint32(atomic.LoadUint64(&n.word)) }

// size returns inner node n's number of leaves beneath it.
func (n *node) size() int32 { return int32(atomic.LoadUint64(&n.word) >> 32) }

// addSize adds d to the size of bitmap node n, which its caller owns (see
// "Ownership" in the file comment), publishing the word atomically. Only
// the owner writes the word, so the load and the store need no swap.
func (n *node) addSize(d int32) {
	atomic.StoreUint64(&n.word, n.word+uint64(int64(d))<<32)
}

// edit returns inner node n's edit tag: the tag of the context epoch that
// made it (see "Ownership" in the file comment), 0 for none. It is set by
// newInner and never changes.
func (n *node) edit() uint64 {
	return *(*uint64)(unsafe.Add(unsafe.Pointer(n), unsafe.Sizeof(node{})))
}

// tag returns the edit tag node n was made under, leaf or inner (0 for a nil
// n, or a node made under none).
func (n *node) tag() uint64 {
	switch {
	case n == nil:
		return 0
	case n.key != nil:
		return leafTag(n)
	}
	return n.edit()
}

// owned reports whether inner node n may be changed in place by the holder
// of edit tag e: n was made under e, and e is a tag (not 0).
func (n *node) owned(e uint64) bool { return e != 0 && n.edit() == e }

// isBitmap reports whether n is a bitmap node (rather than a leaf or a list
// node).
func (n *node) isBitmap() bool { return n.key == nil && n.bitmap() != 0 }

// nkids returns the number of kids of inner node n.
func (n *node) nkids() int {
	if n.bitmap() != 0 {
		return bits.OnesCount32(n.bitmap())
	}
	return int(n.size()) // a list node's kids are its leaves
}

// kids returns inner node n's kids: the array that follows n in the
// allocation newInner made, nkids long. Every inner node comes from
// newInner, and a leaf has no kids, so kids is never called on a leaf.
func (n *node) kids() []*node {
	return unsafe.Slice(n.kid0(), n.nkids())
}

// kid0 returns the address of inner node n's first kid, which follows its
// edit tag.
func (n *node) kid0() **node {
	return (**node)(unsafe.Add(unsafe.Pointer(n), innerHeader))
}

// innerHeader is the size of an inner node before its kids: the node and
// its edit tag.
const innerHeader = unsafe.Sizeof(node{}) + unsafe.Sizeof(uint64(0))

// slot returns the address of inner node n's kid i.
func (n *node) slot(i int) *unsafe.Pointer {
	return (*unsafe.Pointer)(unsafe.Add(unsafe.Pointer(n.kid0()), uintptr(i)*unsafe.Sizeof((*node)(nil))))
}

// kid returns inner node n's kid i, which must exist. It loads the slot
// atomically: an owned node's slots are stored in place (storeKid) while
// other goroutines read the context.
func (n *node) kid(i int) *node { return (*node)(atomic.LoadPointer(n.slot(i))) }

// storeKid stores kid into slot i of inner node n, which its caller owns
// (see "Ownership" in the file comment). The store synchronizes before any
// load of the slot that observes it, so a reader finds a complete kid.
func (n *node) storeKid(i int, kid *node) { atomic.StorePointer(n.slot(i), unsafe.Pointer(kid)) }

// hash returns the hash shared by every key beneath a leaf or collision node.
func (n *node) hash() uint64 {
	if n.key != nil {
		return n.key.hash()
	}
	return n.kid(0).key.hash()
}

// len returns the number of bindings in the map rooted at n.
func (n *node) len() int {
	switch {
	case n == nil:
		return 0
	case n.key != nil:
		return 1
	}
	return int(n.size())
}

// get returns the leaf bound to k in the map rooted at n, or nil. It is
// small enough to be inlined, and answers a root that is a leaf (a context
// of one var) without a call.
func (n *node) get(k *varCore) *node {
	if n == nil || n.key == k {
		return n
	}
	if n.key != nil {
		return nil
	}
	return n.find(k)
}

// find is get for an inner node n. It is kept out of line so that get
// stays small enough to inline.
//
//go:noinline
func (n *node) find(k *varCore) *node {
	h := k.hash()
	// n is inner, so its word is its bitmap and size; a kid's is read only
	// once its key says it is no leaf (see node).
	for bm := n.bitmap(); bm != 0; bm = n.bitmap() {
		bit := uint32(1) << (h & levelMask)
		if bm&bit == 0 {
			return nil
		}
		n = n.kid(bits.OnesCount32(bm & (bit - 1))) // never nil
		h >>= bitsPerLevel
		if n.key != nil {
			if n.key == k {
				return n
			}
			return nil
		}
	}
	// A list node: a flat root or a collision node.
	for i := range int(n.size()) {
		if l := n.kid(i); l.key == k {
			return l
		}
	}
	return nil
}

// set returns the map rooted at n with leaf l added, replacing any leaf with
// l's key, and the leaf it replaced (nil if none). l is not changed, and may
// be in other maps already. No node of n changes: set copies the path it
// changes. It is setIn with no edit tag, for the trie's tests and
// benchmarks; contexts use setIn.
func (n *node) set(l *node) (root, replaced *node) { return n.setIn(l, 0) }

// setIn is set for the owner of edit tag e (see "Ownership" in the file
// comment): inner nodes of n tagged e change in place, the others are
// copied, and the copies are tagged e. e == 0 owns nothing. It is small
// enough to inline, and answers without a call where the map is empty or
// l's var is its only one.
func (n *node) setIn(l *node, e uint64) (root, replaced *node) {
	root, replaced = l, n
	if n != nil && n.key != l.key {
		root, replaced = n.assoc(l, e)
	}
	return
}

// assoc is setIn for the other cases, out of line.
//
//go:noinline
func (n *node) assoc(l *node, e uint64) (root, replaced *node) {
	if n.isBitmap() {
		return n.setHashedIn(l, 0, e)
	}
	return n.setFlat(l, e)
}

// setFlat is set for a root that is a leaf or a list: a context of up to
// flatMax vars is one flat list, whatever their hashes, so that a Set in it
// changes one small node, never a path of two or three.
func (n *node) setFlat(l *node, e uint64) (root, replaced *node) {
	if n.key != nil || n.size() < flatMax || n.allHash(l.key.hash()) || n.holds(l.key) {
		return n.setList(l, e)
	}
	// One var too many for a flat root: rebuild it as a trie.
	var t *node
	for _, k := range n.kids() {
		t, _ = t.setHashedIn(k, 0, e)
	}
	t, _ = t.setHashedIn(l, 0, e)
	return t, nil
}

// setList returns leaf or list node n with leaf l in it, replacing the leaf
// with l's key or else adding l, and the leaf it replaced (nil if none). A
// list node tagged e has the replaced leaf's slot stored in place; an added
// leaf always makes a new node.
func (n *node) setList(l *node, e uint64) (root, replaced *node) {
	if n.key != nil {
		if n.key == l.key {
			return l, n
		}
		c := newInner(0, 2, 2, e)
		kids := c.kids()
		kids[0], kids[1] = n, l
		return c, nil
	}
	kids := n.kids()
	for i, old := range kids {
		if old.key == l.key {
			if n.owned(e) {
				n.storeKid(i, l)
				return n, old
			}
			return n.cloneWith(i, l, 0, e), old
		}
	}
	return n.cloneInsert(len(kids), l, 0, e), nil
}

// holds reports whether list node n has a leaf for k.
func (n *node) holds(k *varCore) bool {
	for _, l := range n.kids() {
		if l.key == k {
			return true
		}
	}
	return false
}

// allHash reports whether every leaf of list node n has hash h.
func (n *node) allHash(h uint64) bool {
	for _, k := range n.kids() {
		if k.key.hash() != h {
			return false
		}
	}
	return true
}

// setHashed is setHashedIn with no edit tag, for the trie's tests.
func (n *node) setHashed(l *node, shift uint) (root, replaced *node) {
	return n.setHashedIn(l, shift, 0)
}

// setHashedIn is set below a flat root, and for roots of more than flatMax
// vars: the hash array mapped trie proper. A bitmap node tagged e whose kid
// changes has the kid stored in place, and its size too where a leaf is
// added; a kid added to a bitmap node makes a new node.
func (n *node) setHashedIn(l *node, shift uint, e uint64) (root, replaced *node) {
	if n == nil {
		return l, nil
	}
	if !n.isBitmap() { // leaf or collision node
		h := n.hash()
		if h != l.key.hash() {
			return merge(n, h, l, l.key.hash(), shift, e), nil
		}
		return n.setList(l, e)
	}

	bit := uint32(1) << ((l.key.hash() >> shift) & levelMask)
	i := bits.OnesCount32(n.bitmap() & (bit - 1))
	if n.bitmap()&bit == 0 {
		return n.cloneInsert(i, l, bit, e), nil
	}
	old := n.kid(i)
	kid, replaced := old.setHashedIn(l, shift+bitsPerLevel, e)
	grew := int32(1)
	if replaced != nil {
		grew = 0
	}
	if n.owned(e) {
		if kid != old {
			n.storeKid(i, kid)
		}
		if grew != 0 {
			n.addSize(grew)
		}
		return n, replaced
	}
	return n.cloneWith(i, kid, grew, e), replaced
}

// merge returns a node at depth shift holding a and b, two leaf or collision
// nodes with different hashes ha and hb, its new nodes tagged e.
func merge(a *node, ha uint64, b *node, hb uint64, shift uint, e uint64) *node {
	size := int32(a.len() + b.len())
	ia, ib := (ha>>shift)&levelMask, (hb>>shift)&levelMask
	if ia == ib {
		c := newInner(1<<ia, size, 1, e)
		c.kids()[0] = merge(a, ha, b, hb, shift+bitsPerLevel, e)
		return c
	}
	c := newInner(1<<ia|1<<ib, size, 2, e)
	kids := c.kids()
	if ia < ib {
		kids[0], kids[1] = a, b
	} else {
		kids[0], kids[1] = b, a
	}
	return c
}

// delete returns the map rooted at n without k, and the leaf it removed (nil
// if k was absent, in which case root is n itself). No node of n changes. It
// is deleteIn with no edit tag, for the trie's tests and benchmarks.
func (n *node) delete(k *varCore) (root, removed *node) { return n.deleteAt(k, 0, 0) }

// deleteIn is delete for the owner of edit tag e, as setIn is set's.
func (n *node) deleteIn(k *varCore, e uint64) (root, removed *node) { return n.deleteAt(k, 0, e) }

// deleteAt is deleteIn for a node at depth shift. A bitmap node tagged e
// whose kid changes, but not its set of kids, has the kid and its size
// stored in place; a node that loses a kid is copied.
func (n *node) deleteAt(k *varCore, shift uint, e uint64) (root, removed *node) {
	switch {
	case n == nil:
		return nil, nil
	case n.key != nil:
		if n.key == k {
			return nil, n
		}
		return n, nil
	case n.bitmap() == 0:
		kids := n.kids()
		for i, l := range kids {
			if l.key != k {
				continue
			}
			if len(kids) == 2 {
				return kids[1-i], l
			}
			return n.cloneRemove(i, 0, e), l
		}
		return n, nil
	}

	bit := uint32(1) << ((k.hash() >> shift) & levelMask)
	if n.bitmap()&bit == 0 {
		return n, nil
	}
	i := bits.OnesCount32(n.bitmap() & (bit - 1))
	kids := n.kids()
	kid, removed := kids[i].deleteAt(k, shift+bitsPerLevel, e)
	switch {
	case removed == nil:
		return n, nil
	case kid == nil && len(kids) == 1:
		return nil, removed
	case kid == nil && len(kids) == 2 && !kids[1-i].isBitmap():
		// Keep the invariant: a lone leaf or collision node moves up into
		// the parent's slot.
		return kids[1-i], removed
	case kid == nil:
		return n.cloneRemove(i, bit, e), removed
	case len(kids) == 1 && !kid.isBitmap():
		return kid, removed // a lone leaf or collision node moves up
	}
	if n.owned(e) {
		if kid != kids[i] {
			n.storeKid(i, kid)
		}
		n.addSize(-1)
		return n, removed
	}
	return n.cloneWith(i, kid, -1, e), removed
}

// cloneWith returns a copy of inner node n, tagged e, with kid in slot i and
// size changed by grew.
func (n *node) cloneWith(i int, kid *node, grew int32, e uint64) *node {
	kids := n.kids()
	c := newInner(n.bitmap(), n.size()+grew, len(kids), e)
	ckids := c.kids()
	copy(ckids, kids)
	ckids[i] = kid
	return c
}

// cloneInsert returns a copy of inner node n, tagged e, with leaf l inserted
// at slot i and bit added to the bitmap (0 for a list node).
func (n *node) cloneInsert(i int, l *node, bit uint32, e uint64) *node {
	kids := n.kids()
	c := newInner(n.bitmap()|bit, n.size()+1, len(kids)+1, e)
	ckids := c.kids()
	copy(ckids, kids[:i])
	ckids[i] = l
	copy(ckids[i+1:], kids[i:])
	return c
}

// cloneRemove returns a copy of inner node n, tagged e, without slot i,
// whose one leaf was removed, and without bit in the bitmap (0 for a list
// node).
func (n *node) cloneRemove(i int, bit uint32, e uint64) *node {
	kids := n.kids()
	c := newInner(n.bitmap()&^bit, n.size()-1, len(kids)-1, e)
	ckids := c.kids()
	copy(ckids, kids[:i])
	copy(ckids[i:], kids[i+1:])
	return c
}

// walk calls yield for each leaf in the map rooted at n until yield returns
// false, and reports whether it visited every leaf.
func (n *node) walk(yield func(*node) bool) bool {
	if n == nil {
		return true
	}
	if n.key != nil {
		return yield(n)
	}
	for _, k := range n.kids() {
		if !k.walk(yield) {
			return false
		}
	}
	return true
}

// newInner returns an inner node tagged e with room for nkids kids, all
// nil, that says (through bitmap and size) it has nkids of them: the caller
// fills them in before the node is shared. The node, its edit tag and its
// kids array are one allocation, the array right after the tag, where kids
// finds it; so a path copy allocates once per level and a lookup touches one
// object per level. The array lengths fill Go's size classes (24 bytes of
// node and tag plus 8 per kid: 32, 48, 64, 80, ... 272 bytes, odd numbers
// of kids), so an allocation carries at most one unused slot; a node of 32
// kids (280 bytes) leaves 8 bytes of its 288-byte class unused. A collision
// node of more than 32 leaves (only the tests make one) gets a bigger array
// (bigInner).
func newInner(bitmap uint32, size int32, nkids int, e uint64) *node {
	var n *node
	switch {
	case nkids <= 32:
		n = innerAlloc[nkids/2]() // the odd number of slots at or above nkids; 32 for 32
	default:
		n = bigInner(nkids)
	}
	n.word = uint64(bitmap) | uint64(uint32(size))<<32
	*(*uint64)(unsafe.Add(unsafe.Pointer(n), unsafe.Sizeof(node{}))) = e
	return n
}

// innerAlloc allocates nodes with room for 1, 3, 5, ... 31 and 32 kids.
var innerAlloc = [...]func() *node{
	allocInner[[1]*node], allocInner[[3]*node], allocInner[[5]*node], allocInner[[7]*node],
	allocInner[[9]*node], allocInner[[11]*node], allocInner[[13]*node], allocInner[[15]*node],
	allocInner[[17]*node], allocInner[[19]*node], allocInner[[21]*node], allocInner[[23]*node],
	allocInner[[25]*node], allocInner[[27]*node], allocInner[[29]*node], allocInner[[31]*node],
	allocInner[[32]*node],
}

// withKids is an inner node with its edit tag and its kids array A (a
// [k]*node) right after it, where edit and kids look for them: the tag at
// offset unsafe.Sizeof(node{}), the array at innerHeader, as init checks.
type withKids[A any] struct {
	n    node
	edit uint64
	a    A
}

// allocInner allocates a withKids[A] and returns its node.
func allocInner[A any]() *node { return &new(withKids[A]).n }

func init() {
	if unsafe.Offsetof(withKids[[1]*node]{}.edit) != unsafe.Sizeof(node{}) ||
		unsafe.Offsetof(withKids[[1]*node]{}.a) != innerHeader ||
		unsafe.Offsetof(withKids[[32]*node]{}.a) != innerHeader {
		panic(errInternal("a node's edit tag and kids do not follow it"))
	}
}

// bigInner allocates a node with room for k > 32 kids. Only a collision
// node gets so big, and only keys made to share a hash share one: every Var
// has a hash of its own (nextHash; a zero Var gets one at its first Set), so
// the package's tries never hold a collision node. The trie's tests make
// them, of up to 200 keys.
func bigInner(k int) *node {
	switch {
	case k <= 64:
		return allocInner[[64]*node]()
	case k <= 128:
		return allocInner[[128]*node]()
	case k <= 256:
		return allocInner[[256]*node]()
	}
	panic(errInternal("a collision node of more than 256 keys"))
}
