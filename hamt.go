package contextvars

// This file holds the trie behind every Context: a persistent hash array
// mapped trie (HAMT) from vars to leaves, after CPython's Python/hamt.c
// (get ~ hamt_find, set ~ hamt_assoc, delete ~ hamt_without; Phil Bagwell,
// "Ideal Hash Trees", 2001).
//
// Invariant: no node changes once a published root reaches it. set and
// delete copy the one root-to-leaf path they change and share the rest, so
// copying a map is copying its root pointer; nodes are written only while
// private to the function that allocated them.
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
// An inner node's kids follow it in its allocation (newInner), so a path copy
// allocates once per level and a lookup touches one object per level.

import (
	"math/bits"
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

// bitmap returns inner node n's bitmap: 0 for a list node.
func (n *node) bitmap() uint32 { return uint32(n.word) }

// size returns inner node n's number of leaves beneath it.
func (n *node) size() int32 { return int32(n.word >> 32) }

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

// kid0 returns the address of inner node n's first kid.
func (n *node) kid0() **node {
	return (**node)(unsafe.Add(unsafe.Pointer(n), unsafe.Sizeof(node{})))
}

// kid returns inner node n's kid i, which must exist.
func (n *node) kid(i int) *node {
	return *(**node)(unsafe.Add(unsafe.Pointer(n.kid0()), uintptr(i)*unsafe.Sizeof((*node)(nil))))
}

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
	for _, l := range n.kids() {
		if l.key == k {
			return l
		}
	}
	return nil
}

// set returns the map rooted at n with leaf l added, replacing any leaf with
// l's key, and the leaf it replaced (nil if none). l is not changed, and may
// be in other maps already. set is small enough to inline, and answers
// without a call where the map is empty or l's var is its only one.
func (n *node) set(l *node) (root, replaced *node) {
	root, replaced = l, n
	if n != nil && n.key != l.key {
		root, replaced = n.assoc(l)
	}
	return
}

// assoc is set for the other cases, out of line.
//
//go:noinline
func (n *node) assoc(l *node) (root, replaced *node) {
	if n.isBitmap() {
		return n.setHashed(l, 0)
	}
	return n.setFlat(l)
}

// setFlat is set for a root that is a leaf or a list: a context of up to
// flatMax vars is one flat list, whatever their hashes, so that a Set in it
// copies one small node, never a path of two or three.
func (n *node) setFlat(l *node) (root, replaced *node) {
	if n.key != nil || n.size() < flatMax || n.allHash(l.key.hash()) || n.holds(l.key) {
		return n.setList(l)
	}
	// One var too many for a flat root: rebuild it as a trie.
	var t *node
	for _, k := range n.kids() {
		t, _ = t.setHashed(k, 0)
	}
	t, _ = t.setHashed(l, 0)
	return t, nil
}

// setList returns leaf or list node n with leaf l in it, replacing the leaf
// with l's key or else adding l, and the leaf it replaced (nil if none).
func (n *node) setList(l *node) (root, replaced *node) {
	if n.key != nil {
		if n.key == l.key {
			return l, n
		}
		c := newInner(0, 2, 2)
		kids := c.kids()
		kids[0], kids[1] = n, l
		return c, nil
	}
	kids := n.kids()
	for i, old := range kids {
		if old.key == l.key {
			return n.cloneWith(i, l, 0), old
		}
	}
	return n.cloneInsert(len(kids), l, 0), nil
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

// setHashed is set below a flat root, and for roots of more than flatMax
// vars: the hash array mapped trie proper.
func (n *node) setHashed(l *node, shift uint) (root, replaced *node) {
	if n == nil {
		return l, nil
	}
	if !n.isBitmap() { // leaf or collision node
		h := n.hash()
		if h != l.key.hash() {
			return merge(n, h, l, l.key.hash(), shift), nil
		}
		return n.setList(l)
	}

	bit := uint32(1) << ((l.key.hash() >> shift) & levelMask)
	i := bits.OnesCount32(n.bitmap() & (bit - 1))
	if n.bitmap()&bit == 0 {
		return n.cloneInsert(i, l, bit), nil
	}
	kid, replaced := n.kid(i).setHashed(l, shift+bitsPerLevel)
	grew := int32(1)
	if replaced != nil {
		grew = 0
	}
	return n.cloneWith(i, kid, grew), replaced
}

// merge returns a node at depth shift holding a and b, two leaf or collision
// nodes with different hashes ha and hb.
func merge(a *node, ha uint64, b *node, hb uint64, shift uint) *node {
	size := int32(a.len() + b.len())
	ia, ib := (ha>>shift)&levelMask, (hb>>shift)&levelMask
	if ia == ib {
		c := newInner(1<<ia, size, 1)
		c.kids()[0] = merge(a, ha, b, hb, shift+bitsPerLevel)
		return c
	}
	c := newInner(1<<ia|1<<ib, size, 2)
	kids := c.kids()
	if ia < ib {
		kids[0], kids[1] = a, b
	} else {
		kids[0], kids[1] = b, a
	}
	return c
}

// delete returns the map rooted at n without k, and the leaf it removed (nil
// if k was absent, in which case root is n itself).
func (n *node) delete(k *varCore) (root, removed *node) { return n.deleteAt(k, 0) }

// deleteAt is delete for a node at depth shift.
func (n *node) deleteAt(k *varCore, shift uint) (root, removed *node) {
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
			return n.cloneRemove(i, 0), l
		}
		return n, nil
	}

	bit := uint32(1) << ((k.hash() >> shift) & levelMask)
	if n.bitmap()&bit == 0 {
		return n, nil
	}
	i := bits.OnesCount32(n.bitmap() & (bit - 1))
	kids := n.kids()
	kid, removed := kids[i].deleteAt(k, shift+bitsPerLevel)
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
		return n.cloneRemove(i, bit), removed
	case len(kids) == 1 && !kid.isBitmap():
		return kid, removed // a lone leaf or collision node moves up
	}
	return n.cloneWith(i, kid, -1), removed
}

// cloneWith returns a copy of inner node n with kid in slot i and size
// changed by grew.
func (n *node) cloneWith(i int, kid *node, grew int32) *node {
	kids := n.kids()
	c := newInner(n.bitmap(), n.size()+grew, len(kids))
	ckids := c.kids()
	copy(ckids, kids)
	ckids[i] = kid
	return c
}

// cloneInsert returns a copy of inner node n with leaf l inserted at slot i
// and bit added to the bitmap (0 for a collision node).
func (n *node) cloneInsert(i int, l *node, bit uint32) *node {
	kids := n.kids()
	c := newInner(n.bitmap()|bit, n.size()+1, len(kids)+1)
	ckids := c.kids()
	copy(ckids, kids[:i])
	ckids[i] = l
	copy(ckids[i+1:], kids[i:])
	return c
}

// cloneRemove returns a copy of inner node n without slot i, whose one leaf
// was removed, and without bit in the bitmap (0 for a collision node).
func (n *node) cloneRemove(i int, bit uint32) *node {
	kids := n.kids()
	c := newInner(n.bitmap()&^bit, n.size()-1, len(kids)-1)
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

// newInner returns an inner node with room for nkids kids, all nil, that
// says (through bitmap and size) it has nkids of them: the caller fills them
// in before the node is shared. The node and its kids array are one
// allocation, the array right after the node, where kids finds it; so a path
// copy allocates once per level and a lookup touches one object per level.
// The array lengths fill Go's size classes (16 bytes of node plus 8 per
// kid: 24, 32, 48, 64, 80, ... 256 bytes), so an allocation carries at most
// one unused slot; nodes of 31 and 32 kids (272 bytes) also leave 16 bytes
// of their 288-byte class unused. A collision node of more than 32 leaves
// (only the tests make one) gets a bigger array (bigInner).
func newInner(bitmap uint32, size int32, nkids int) *node {
	var n *node
	switch {
	case nkids <= 1:
		n = innerAlloc[0]()
	case nkids <= 32:
		n = innerAlloc[(nkids+1)/2]() // the even number of slots at or above nkids
	default:
		n = bigInner(nkids)
	}
	n.word = uint64(bitmap) | uint64(uint32(size))<<32
	return n
}

// innerAlloc allocates nodes with room for 1, 2, 4, 6, ... 32 kids.
var innerAlloc = [...]func() *node{
	allocInner[[1]*node], allocInner[[2]*node], allocInner[[4]*node], allocInner[[6]*node],
	allocInner[[8]*node], allocInner[[10]*node], allocInner[[12]*node], allocInner[[14]*node],
	allocInner[[16]*node], allocInner[[18]*node], allocInner[[20]*node], allocInner[[22]*node],
	allocInner[[24]*node], allocInner[[26]*node], allocInner[[28]*node], allocInner[[30]*node],
	allocInner[[32]*node],
}

// withKids is an inner node with its kids array A (a [k]*node) right after
// it, where kids looks for them: the array starts at offset
// unsafe.Sizeof(node{}), as init checks.
type withKids[A any] struct {
	n node
	a A
}

// allocInner allocates a withKids[A] and returns its node.
func allocInner[A any]() *node { return &new(withKids[A]).n }

func init() {
	if unsafe.Offsetof(withKids[[1]*node]{}.a) != unsafe.Sizeof(node{}) ||
		unsafe.Offsetof(withKids[[32]*node]{}.a) != unsafe.Sizeof(node{}) {
		panic(errInternal("a node's kids do not follow it"))
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
