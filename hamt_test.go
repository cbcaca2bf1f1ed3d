package contextvars

import (
	"iter"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/benbjohnson/immutable"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hashers used to run the trie suite under different shapes, as Go's
// hashtriemap tests run under a real, a zero and a truncated hash.
var hashers = []struct {
	name string
	hash func(i int) uint64
}{
	{"real", func(int) uint64 { return nextHash() }},
	// Every key collides: one collision node.
	{"zero", func(int) uint64 { return 0 }},
	// Two bits of hash: four collision nodes under one bitmap node.
	{"fewbits", func(i int) uint64 { return uint64(i) & 3 }},
	// Hashes differ only in their top bits: the deepest paths.
	{"highbits", func(i int) uint64 { return uint64(i) << 58 }},
	// Low bits equal, then differ: near collisions.
	{"nearcollision", func(i int) uint64 { return uint64(i%5)<<40 | 0x1f }},
}

// keyset returns n trie keys hashed by hash.
func keyset(n int, hash func(int) uint64) []*varCore {
	ks := make([]*varCore, n)
	for i := range ks {
		ks[i] = coreWithHash(hash(i), string(rune('a'+i%26)))
	}
	return ks
}

// leafOf returns a new leaf binding k to val, as Var.Set makes one. Its word,
// which in Var.Set's leaves holds the token's state, is set to all ones: the
// trie must tell a leaf by its key and never read its word (see node).
func leafOf(k *varCore, val int) *node {
	b := &binding[int]{val: val}
	b.leaf.key = k
	return &b.leaf
}

func valueOf(l *node) int { return bindingOf[int](l).val }

// validate checks every invariant of the node kinds (see hamt.go) in the map
// rooted at n, at depth shift, where every key has the hash bits prefix
// below shift, and returns the number of leaves. It uses plain checks: it
// runs on every node of every version the fuzz test keeps.
func validate(t *testing.T, n *node, shift uint, prefix uint64) int {
	t.Helper()
	if n == nil {
		return 0
	}
	mask := uint64(1)<<shift - 1
	if shift >= 64 {
		mask = ^uint64(0)
	}
	switch {
	case n.key != nil:
		if n.key.hash()&mask != prefix&mask {
			t.Fatalf("leaf %x on the path of %x at shift %d", n.key.hash(), prefix, shift)
		}
		return 1
	case n.bitmap() == 0:
		// A list node's size is its number of leaves (nkids).
		kids := n.kids()
		if len(kids) < 2 {
			t.Fatalf("list node with %d leaves", len(kids))
		}
		// A flat root holds up to flatMax leaves of any hashes; any other
		// list is a collision node, all of one hash.
		flat := shift == 0 && len(kids) <= flatMax
		for _, l := range kids {
			if l == nil || l.key == nil || !flat && l.key.hash() != kids[0].key.hash() {
				t.Fatalf("collision node holds a nil, a non-leaf or two hashes")
			}
		}
		if kids[0].key.hash()&mask != prefix&mask {
			t.Fatalf("collision node on the wrong path")
		}
		return len(kids)
	}
	if shift >= maxShift {
		t.Fatalf("bitmap node below the last level")
	}
	// A bitmap node's kids are popcount(bitmap) (nkids).
	kids := n.kids()
	if len(kids) == 1 && !kids[0].isBitmap() {
		t.Fatalf("a lone leaf or collision node was not moved up")
	}
	total, i := 0, 0
	for b := uint64(0); b < 32; b++ {
		if n.bitmap()&(1<<b) == 0 {
			continue
		}
		if kids[i] == nil {
			t.Fatalf("nil kid")
		}
		total += validate(t, kids[i], shift+bitsPerLevel, prefix&mask|b<<shift)
		i++
	}
	if int(n.size()) != total {
		t.Fatalf("bitmap node size %d, %d leaves beneath", n.size(), total)
	}
	return total
}

// trieMap is the trie under test beside a Go map and immutable.Map holding
// the same bindings (keys by index), after immutable_test.go's TMap.
type trieMap struct {
	keys  []*varCore
	root  *node
	model map[int]int
	im    *immutable.Map[int, int]

	// e is the edit tag the trie's owner writes under, as a Context's
	// (see "Ownership" in hamt.go): nodes tagged e change in place. A
	// snapshot ends it (nextTag).
	e uint64
}

// nextTag ends m's edit tag, as a snapshot of a Context does: no node made
// so far changes after it.
func (m *trieMap) nextTag() { m.e++ }

func newTrieMap(keys []*varCore) *trieMap {
	return &trieMap{keys: keys, model: map[int]int{}, im: immutable.NewMap[int, int](nil)}
}

// set binds key k to v, under edit tag e (0: copying every node it
// changes, as set does).
func (m *trieMap) set(t *testing.T, k, v int, e uint64) {
	root, replaced := m.root.setIn(leafOf(m.keys[k], v), e)
	old, had := m.model[k]
	if had != (replaced != nil) || had && valueOf(replaced) != old {
		t.Fatalf("set(%d) replaced %v; want the leaf of %d (present: %v)", k, replaced, old, had)
	}
	m.root = root
	m.model[k] = v
	m.im = m.im.Set(k, v)
}

// delete removes key k, under edit tag e as set.
func (m *trieMap) delete(t *testing.T, k int, e uint64) {
	root, removed := m.root.deleteIn(m.keys[k], e)
	_, had := m.model[k]
	if had != (removed != nil) {
		t.Fatalf("delete(%d) removed %v; want a leaf: %v", k, removed, had)
	}
	if !had && root != m.root {
		t.Fatalf("delete(%d) of an absent key returned a new root", k)
	}
	m.root = root
	delete(m.model, k)
	m.im = m.im.Delete(k)
}

// check compares the trie with both oracles: len, every key, iteration.
func (m *trieMap) check(t *testing.T) {
	t.Helper()
	if m.root.len() != len(m.model) || m.root.len() != m.im.Len() {
		t.Fatalf("len = %d; model %d, immutable.Map %d", m.root.len(), len(m.model), m.im.Len())
	}
	validate(t, m.root, 0, 0)
	for k := range m.keys {
		l := m.root.get(m.keys[k])
		want, ok := m.model[k]
		iv, iok := m.im.Get(k)
		if ok != iok || ok != (l != nil) || ok && (valueOf(l) != want || iv != want) {
			t.Fatalf("get(%d) = %v; model %d, %v; immutable.Map %d, %v", k, l, want, ok, iv, iok)
		}
	}
	seen := map[*varCore]int{}
	m.root.walk(func(l *node) bool { seen[l.key] = valueOf(l); return true })
	require.Len(t, seen, len(m.model), "walk visits each leaf once")
	for k, v := range m.model {
		require.Equal(t, v, seen[m.keys[k]], "walk value of %d", k)
	}
}

// runOps applies a program of operations decoded from data to a trie over
// nkeys keys hashed by hash, checking it against the oracles after each step
// and, at the end, that no earlier version changed (persistence). Sets and
// deletes run as a Context's owner does, changing in place the nodes made
// since the last snapshot, except where the op's top bit asks for a plain
// copying one; a snapshot op keeps the version, ends the edit tag, and walks
// the version while the next ops change the trie (its walk must yield what
// the version held when taken).
func runOps(t *testing.T, data []byte, nkeys int, hash func(int) uint64) {
	m := newTrieMap(keyset(nkeys, hash))
	m.e = 1
	type version struct {
		root  *node
		model map[int]int
	}
	var versions []version
	// A walk of the last version, one leaf per op, interleaved with the
	// writes that follow the snapshot.
	var next func() (*node, bool)
	var stop func()
	var walking map[int]int
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	for len(data) >= 2 {
		op, k := data[0]%8, int(data[1])%nkeys
		e := m.e
		if data[0]&0x80 != 0 {
			e = 0
		}
		data = data[2:]
		switch {
		case op < 4:
			m.set(t, k, int(op)<<8|k, e)
		case op < 7:
			m.delete(t, k, e)
		default:
			versions = append(versions, version{m.root, maps.Clone(m.model)})
			m.nextTag()
			if stop != nil {
				stop()
			}
			r := m.root
			next, stop = iter.Pull(func(yield func(*node) bool) { r.walk(yield) })
			walking = maps.Clone(m.model)
		}
		if next != nil {
			if l, ok := next(); ok {
				i := slices.Index(m.keys, l.key)
				if want, had := walking[i]; !had || valueOf(l) != want {
					t.Fatalf("walk of a snapshot yields key %d = %d; the snapshot held %d, %v", i, valueOf(l), want, had)
				}
				delete(walking, i)
			} else {
				if len(walking) != 0 {
					t.Fatalf("walk of a snapshot missed %d keys", len(walking))
				}
				next, stop = nil, nil
			}
		}
		// Plain checks: testify's reflection would dominate the run.
		if got := m.root.len(); got != len(m.model) {
			t.Fatalf("len = %d; want %d", got, len(m.model))
		}
		want, ok := m.model[k]
		if l := m.root.get(m.keys[k]); (l != nil) != ok || ok && valueOf(l) != want {
			t.Fatalf("get(%d) = %v; want %d, %v", k, l, want, ok)
		}
	}
	m.check(t)
	for _, v := range versions {
		old := &trieMap{keys: m.keys, root: v.root, model: v.model, im: immutable.NewMap[int, int](nil)}
		for k, val := range v.model {
			old.im = old.im.Set(k, val)
		}
		old.check(t)
	}
}

// FuzzHAMT drives random set/delete/get sequences against a Go map and
// immutable.Map, under each hasher, and checks old versions never change.
// The first byte picks the hasher, the second the key space.
func FuzzHAMT(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		b := make([]byte, 2+rng.IntN(400))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		f.Add(b)
	}
	f.Add([]byte{0, 3, 0, 1, 1, 2, 2, 3, 7, 0, 4, 1, 5, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		h := hashers[int(data[0])%len(hashers)]
		nkeys := 1 + int(data[1])%64
		runOps(t, data[2:], nkeys, h.hash)
	})
}

// TestHAMT_random runs fixed-seed random programs under every hasher, so
// every go test exercises what FuzzHAMT does.
func TestHAMT_random(t *testing.T) {
	for _, h := range hashers {
		t.Run(h.name, func(t *testing.T) {
			for seed := range uint64(30) {
				rng := rand.New(rand.NewPCG(seed, 7))
				data := make([]byte, 2000)
				for i := range data {
					data[i] = byte(rng.Uint32())
				}
				runOps(t, data, 1+int(seed*7)%200, h.hash)
			}
		})
	}
}

// TestHAMT_stress is CPython's test_hamt_stress: grow a trie to many keys,
// checking len at every step and all items now and then, then shrink it.
func TestHAMT_stress(t *testing.T) {
	n := 20000
	if !long() {
		n = 2000
	}
	for _, h := range hashers[:1] {
		m := newTrieMap(keyset(n, h.hash))
		m.e = 1 // in place, as a Context that is never copied
		for k := range n {
			m.set(t, k, k, m.e)
			require.Equal(t, k+1, m.root.len())
			if k%5000 == 0 {
				m.check(t)
			}
		}
		m.check(t)
		for k := range n {
			m.delete(t, (k*7919)%n, m.e)
			require.Equal(t, n-k-1, m.root.len())
		}
		require.Nil(t, m.root, "the empty map is the nil node")
	}
}

// TestHAMT_collisionDeepest is CPython's test_hamt_collision_3 ("Test that
// iteration works with the deepest tree possible", CPython issue 93065),
// for 64-bit hashes, in the trie below a flat root (setHashed). Keys a and b differ only in the last hash bit, c shares
// a's hash:
//
//	bitmap(0) -> bitmap(0) -> ... 12 levels ... -> bitmap{0: collision(a, c), 1: b}
func TestHAMT_collisionDeepest(t *testing.T) {
	const top = uint64(1) << 63
	a := coreWithHash(0)
	b := coreWithHash(top)
	c := coreWithHash(0)
	var root *node
	for i, k := range []*varCore{a, b, c} {
		root, _ = root.setHashed(leafOf(k, i), 0)
	}
	validate(t, root, 0, 0)
	depth := 0
	for n := root; n.isBitmap(); n = n.kids()[0] {
		depth++
	}
	assert.Equal(t, 13, depth, "bitmap levels down to the collision node")
	var got []int
	root.walk(func(l *node) bool { got = append(got, valueOf(l)); return true })
	slices.Sort(got)
	assert.Equal(t, []int{0, 1, 2}, got)

	root, _ = root.delete(b)
	validate(t, root, 0, 0)
	assert.Zero(t, root.bitmap(), "with b gone the collision node moves up to the root")
	root, _ = root.delete(c)
	assert.Same(t, a, root.key, "with c gone the leaf a is the root")
	root, _ = root.delete(a)
	assert.Nil(t, root)
}

// TestHAMT_shapes ports test_hamt_basics and the hand-drawn cases of
// HamtTest: a two-level tree and its collapse on delete, in the trie below a
// flat root (setHashed).
//
//	hashes 0b00001, 0b00010, 0b100001 (= 1 | 1<<5):
//	bitmap{1: bitmap{0: k1, 1: k3}, 2: k2}
func TestHAMT_shapes(t *testing.T) {
	k1 := coreWithHash(0b1)
	k2 := coreWithHash(0b10)
	k3 := coreWithHash(0b1 | 1<<5)
	var root *node
	root, _ = root.setHashed(leafOf(k1, 1), 0)
	assert.Same(t, k1, root.key, "one key: the root is its leaf")
	root, _ = root.setHashed(leafOf(k2, 2), 0)
	assert.Equal(t, uint32(0b110), root.bitmap())
	root, _ = root.setHashed(leafOf(k3, 3), 0)
	validate(t, root, 0, 0)
	require.Equal(t, uint32(0b110), root.bitmap())
	sub := root.kids()[0]
	assert.Equal(t, uint32(0b11), sub.bitmap())
	assert.Same(t, k1, sub.kids()[0].key)
	assert.Same(t, k3, sub.kids()[1].key)
	assert.Same(t, k2, root.kids()[1].key)
	assert.Equal(t, 3, root.len())

	// Deleting k3 moves k1 up into the root's slot.
	after, removed := root.delete(k3)
	assert.Equal(t, 3, valueOf(removed))
	validate(t, after, 0, 0)
	assert.Same(t, k1, after.kids()[0].key)
	assert.Equal(t, 3, root.len(), "the old version is unchanged")

	// Deleting an absent key returns the same root.
	same, removed := root.delete(coreWithHash(0b11))
	assert.Same(t, root, same)
	assert.Nil(t, removed)
	var empty *node
	assert.Nil(t, empty.get(k1))
	assert.True(t, empty.walk(func(*node) bool { return false }))
}

// TestHAMT_flatRoot checks the flat root: up to flatMax vars of any hashes
// in one list, a trie from one more on, and a collision root of any size.
func TestHAMT_flatRoot(t *testing.T) {
	keys := keyset(flatMax+1, func(int) uint64 { return nextHash() })
	var root *node
	for i, k := range keys[:flatMax] {
		root, _ = root.set(leafOf(k, i))
		validate(t, root, 0, 0)
		if i > 0 {
			require.Zero(t, root.bitmap(), "%d vars: a flat root", i+1)
			require.Len(t, root.kids(), i+1)
		}
	}
	flat := root
	replaced, old := flat.set(leafOf(keys[3], 33))
	assert.Equal(t, 3, valueOf(old))
	assert.Len(t, replaced.kids(), flatMax, "a replace stays flat")

	root, _ = flat.set(leafOf(keys[flatMax], flatMax))
	validate(t, root, 0, 0)
	assert.NotZero(t, root.bitmap(), "one var more: a trie")
	assert.Equal(t, flatMax+1, root.len())
	for i, k := range keys {
		require.Equal(t, i, valueOf(root.get(k)), "get %d after the rebuild", i)
	}
	assert.Len(t, flat.kids(), flatMax, "the flat version is unchanged")

	// Deleting from a flat root keeps it flat, down to a lone leaf.
	for i, k := range keys[:flatMax-1] {
		flat, _ = flat.delete(k)
		validate(t, flat, 0, 0)
		assert.Equal(t, flatMax-1-i, flat.len())
	}
	assert.Same(t, keys[flatMax-1], flat.key)

	// Keys of one hash (made so for the test) stay one list, however many.
	same := keyset(3*flatMax, func(int) uint64 { return 0 })
	root = nil
	for i, k := range same {
		root, _ = root.set(leafOf(k, i))
	}
	validate(t, root, 0, 0)
	assert.Len(t, root.kids(), 3*flatMax)
	other := coreWithHash(1)
	root, _ = root.set(leafOf(other, -1))
	validate(t, root, 0, 0)
	assert.NotZero(t, root.bitmap(), "a var of another hash makes a trie")
	assert.Equal(t, -1, valueOf(root.get(other)))
}

// TestHAMT_nodeLayout checks what node.kids assumes of newInner: every inner
// node, of any number of kids including bigInner's, has room for them right
// after it, and the collector sees them there — kids reachable only through
// the array survive a collection with their keys intact.
func TestHAMT_nodeLayout(t *testing.T) {
	for _, k := range []int{1, 2, 3, 5, 16, 17, 29, 31, 32, 33, 40, 64, 65, 200} {
		keys := keyset(k, func(int) uint64 { return 7 })
		n := newInner(0, int32(k), k, 7)
		require.Equal(t, uint64(7), n.edit(), "the edit tag follows the node")
		kids := n.kids()
		require.Len(t, kids, k)
		for i := range kids {
			require.Nil(t, kids[i], "kids of a new node are nil")
			kids[i] = leafOf(keys[i], i)
		}
		keys = nil
		runtime.GC()
		runtime.GC()
		_ = make([]byte, 1<<20) // reuse freed memory, if any was freed
		for i, l := range n.kids() {
			require.Equal(t, uint64(7), l.key.hash(), "k=%d kid %d", k, i)
			require.Equal(t, i, valueOf(l), "k=%d kid %d", k, i)
			require.Same(t, l, n.kid(i))
		}
		if k >= 2 {
			validate(t, n, 0, 7) // a collision node of k leaves
		}
	}
}

// coreWithHash returns a trie key with hash h and, if given, name.
func coreWithHash(h uint64, name ...string) *varCore {
	k := new(varCore)
	k.h.Store(h)
	if len(name) > 0 {
		k.name = name[0]
	}
	return k
}

// TestHAMT_zeroVarsHashApart: zero Vars take distinct hashes at their first
// Set, so many of them in one context make a trie of leaves, not one growing
// collision node; a Get racing with a zero Var's first Set is clean (-race).
func TestHAMT_zeroVarsHashApart(t *testing.T) {
	vars := make([]Var[int], 100)
	done := make(chan struct{})
	go func() { // reads vars[0] while it is set for the first time below
		defer close(done)
		for range 100 {
			_, _ = vars[0].Get()
		}
	}()
	c := New()
	require.NoError(t, c.Run(func() error {
		for i := range vars {
			vars[i].Set(i)
		}
		return nil
	}))
	<-done
	seen := map[uint64]bool{}
	for i := range vars {
		h := vars[i].c.hash()
		require.NotZero(t, h, "var %d has a hash after its Set", i)
		require.False(t, seen[h], "var %d shares a hash", i)
		seen[h] = true
		got, _ := vars[i].In(c)
		require.Equal(t, i, got)
	}
	validate(t, c.root.Load(), 0, 0)
	assert.NotZero(t, c.root.Load().bitmap(), "a trie, not a collision node")
}
