package contextvars_test

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"

	"github.com/go-contextvars/contextvars"
)

// This file holds FuzzContext: a byte string decodes into a program of
// operations (New, Copy, CopyContext, Set, Reset with good, used,
// foreign-var and foreign-context tokens, Get, reads of contexts, Run nested
// or recursive, a loop over a context that sets vars as it goes) that runs against the library and against refModel, a small
// reference model of Python's semantics written from PEP 567 and
// Python/context.c. Every result and every error must agree.

// refContext is the model of a Context: a plain map, copied on Copy.
type refContext struct {
	vals    map[int]int
	entered bool
}

// refToken is the model of a Token.
type refToken struct {
	v      int
	ctx    *refContext
	old    int
	hasOld bool
	used   bool
}

// refModel is the model of one goroutine: its stack of entered contexts
// over its implicit one, made on first Set.
type refModel struct {
	implicit *refContext
	stack    []*refContext
}

func (m *refModel) current() *refContext {
	if len(m.stack) > 0 {
		return m.stack[len(m.stack)-1]
	}
	return m.implicit
}

func (m *refModel) currentOrImplicit() *refContext {
	if c := m.current(); c != nil {
		return c
	}
	m.implicit = &refContext{vals: map[int]int{}}
	return m.implicit
}

// fuzzVars are the vars of a program: two with defaults, the rest without.
// There are more than a flat root holds (16), so that contexts grow into
// tries whose inner nodes change in place.
type fuzzVars struct {
	real  []*contextvars.Var[int]
	defs  []int // -1: none
	index map[contextvars.Key]int
}

// fuzzVarCount is the number of vars of a program.
const fuzzVarCount = 40

func newFuzzVars() fuzzVars {
	fv := fuzzVars{
		real: []*contextvars.Var[int]{
			contextvars.NewVar[int]("a"), contextvars.NewVarWithDefault("b", 100),
			contextvars.NewVar[int]("c"), contextvars.NewVarWithDefault("d", 200),
		},
		defs:  []int{-1, 100, -1, 200},
		index: map[contextvars.Key]int{},
	}
	for i := len(fv.real); i < fuzzVarCount; i++ {
		fv.real = append(fv.real, contextvars.NewVar[int](fmt.Sprint("x", i)))
		fv.defs = append(fv.defs, -1)
	}
	for i, v := range fv.real {
		fv.index[v] = i
	}
	return fv
}

// program is the state of one run of the fuzz program.
type program struct {
	t      *testing.T
	data   []byte
	vars   fuzzVars
	model  refModel
	ctxs   []*contextvars.Context // real contexts, by index
	rctxs  []*refContext          // their models
	toks   []*contextvars.Token[int]
	rtoks  []*refToken
	steps  int
	depth  int
	failed bool
}

// next returns the next byte of the program, or false at its end.
func (p *program) next() (byte, bool) {
	if len(p.data) == 0 || p.steps > 400 {
		return 0, false
	}
	b := p.data[0]
	p.data = p.data[1:]
	return b, true
}

func (p *program) fail(format string, args ...any) {
	p.failed = true
	p.t.Errorf(format, args...)
}

// wantErr checks that err is sentinel (nil for no error).
func (p *program) wantErr(op string, err, sentinel error) {
	if sentinel == nil && err != nil || sentinel != nil && !errors.Is(err, sentinel) {
		p.fail("%s: error %v; want %v", op, err, sentinel)
	}
}

// checkContext compares context i with its model.
func (p *program) checkContext(i int) {
	c, rc := p.ctxs[i], p.rctxs[i]
	if c.Len() != len(rc.vals) {
		p.fail("ctx %d: Len %d; model %d", i, c.Len(), len(rc.vals))
	}
	for j, v := range p.vars.real {
		got, ok := c.Get(v)
		want, wok := rc.vals[j]
		if ok != wok || ok && got != want {
			p.fail("ctx %d: Get(%s) = %v, %v; model %d, %v", i, v.Name(), got, ok, want, wok)
		}
		typed, tok := v.In(c)
		if tok != wok || tok && typed != want {
			p.fail("ctx %d: %s.In = %d, %v; model %d, %v", i, v.Name(), typed, tok, want, wok)
		}
	}
	seen := map[string]any{}
	for k, v := range c.All() {
		seen[k.Name()] = v
	}
	if len(seen) != len(rc.vals) {
		p.fail("ctx %d: All yields %d vars; model %d", i, len(seen), len(rc.vals))
	}
}

// run executes the program until its end or, inside a Run, until an op
// that ends the Run.
func (p *program) run() {
	for !p.failed {
		b, ok := p.next()
		if !ok {
			return
		}
		p.steps++
		arg, _ := p.next()
		switch b % 11 {
		case 0: // New
			p.ctxs = append(p.ctxs, contextvars.New())
			p.rctxs = append(p.rctxs, &refContext{vals: map[int]int{}})
		case 1: // Copy of a context
			if len(p.ctxs) == 0 {
				continue
			}
			i := int(arg) % len(p.ctxs)
			p.ctxs = append(p.ctxs, p.ctxs[i].Copy())
			p.rctxs = append(p.rctxs, &refContext{vals: maps.Clone(p.rctxs[i].vals)})
		case 2: // CopyContext
			p.ctxs = append(p.ctxs, contextvars.CopyContext())
			vals := map[int]int{}
			if cur := p.model.current(); cur != nil {
				vals = maps.Clone(cur.vals)
			}
			p.rctxs = append(p.rctxs, &refContext{vals: vals})
		case 3, 4: // Set
			p.set(int(arg)%len(p.vars.real), int(arg))
		case 5: // Reset: a token (maybe used, maybe foreign) through a var (maybe another)
			if len(p.toks) == 0 {
				continue
			}
			k := int(arg>>2) % len(p.toks)
			rt := p.rtoks[k]
			j := rt.v
			if arg&3 == 3 {
				j = (j + 1) % len(p.vars.real) // a foreign var
			}
			err := p.vars.real[j].Reset(p.toks[k])
			var want error
			switch {
			case rt.used:
				want = contextvars.ErrTokenUsed
			case rt.v != j:
				want = contextvars.ErrTokenVar
			case p.model.current() != rt.ctx:
				want = contextvars.ErrTokenContext
			default:
				rt.used = true
				if rt.hasOld {
					rt.ctx.vals[rt.v] = rt.old
				} else {
					delete(rt.ctx.vals, rt.v)
				}
			}
			p.wantErr("Reset", err, want)
		case 6: // Get and GetOr
			j := int(arg) % len(p.vars.real)
			v := p.vars.real[j]
			want, wok := 0, false
			if cur := p.model.current(); cur != nil {
				want, wok = cur.vals[j]
			}
			or := v.GetOr(-7)
			if wok && or != want || !wok && or != -7 {
				p.fail("%s.GetOr(-7) = %d; model %d, %v", v.Name(), or, want, wok)
			}
			if !wok && p.vars.defs[j] >= 0 {
				want, wok = p.vars.defs[j], true
			}
			got, ok := v.Get()
			if ok != wok || ok && got != want {
				p.fail("%s.Get() = %d, %v; model %d, %v", v.Name(), got, ok, want, wok)
			}
		case 7: // read a context
			if len(p.ctxs) > 0 {
				p.checkContext(int(arg) % len(p.ctxs))
			}
		case 8: // Run a context (maybe one already entered), nesting the ops that follow
			if len(p.ctxs) == 0 || p.depth >= 8 {
				continue
			}
			i := int(arg) % len(p.ctxs)
			rc := p.rctxs[i]
			wasEntered := rc.entered
			ran := false
			err := p.ctxs[i].Run(func() error {
				ran = true
				rc.entered = true
				p.model.stack = append(p.model.stack, rc)
				p.depth++
				p.run()
				p.depth--
				p.model.stack = p.model.stack[:len(p.model.stack)-1]
				rc.entered = false
				return nil
			})
			if wasEntered {
				p.wantErr("Run of an entered context", err, contextvars.ErrAlreadyEntered)
				if ran {
					p.fail("Run called fn on an entered context")
				}
			} else {
				p.wantErr("Run", err, nil)
			}
		case 9: // end the innermost Run
			if p.depth > 0 {
				return
			}
		case 10: // iterate a context while setting vars in the current one
			if len(p.ctxs) == 0 {
				continue
			}
			i := int(arg) % len(p.ctxs)
			want := maps.Clone(p.rctxs[i].vals)
			n := 0
			for k, v := range p.ctxs[i].All() {
				j := p.vars.index[k]
				if w, ok := want[j]; !ok || v != w {
					p.fail("ctx %d: All yields %s = %v after %d Sets; the context held %d, %v when the loop began", i, k.Name(), v, n, w, ok)
				}
				delete(want, j)
				// Set the var just seen, or another one, in the
				// current context, which may be the one iterated.
				p.set((j+n*int(arg>>4))%len(p.vars.real), 1000+n)
				n++
			}
			if len(want) != 0 {
				p.fail("ctx %d: All missed %d vars", i, len(want))
			}
		}
	}
}

// set sets var j to val in the current context and in the model, and keeps
// the token.
func (p *program) set(j, val int) {
	p.toks = append(p.toks, p.vars.real[j].Set(val))
	rc := p.model.currentOrImplicit()
	old, had := rc.vals[j]
	rc.vals[j] = val
	p.rtoks = append(p.rtoks, &refToken{v: j, ctx: rc, old: old, hasOld: had})
	if o, ok := p.toks[len(p.toks)-1].OldValue(); ok != had || ok && o != old {
		p.fail("Set: OldValue %d, %v; model %d, %v", o, ok, old, had)
	}
}

// runProgram runs data in a new goroutine, so that its implicit context is
// its own, and checks every context at the end.
func runProgram(t *testing.T, data []byte) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		p := &program{t: t, data: data, vars: newFuzzVars()}
		p.run()
		for i := range p.ctxs {
			p.checkContext(i)
		}
	}()
	<-done
}

func FuzzContext(f *testing.F) {
	// Seeds: Python's docs example, recursion, foreign tokens, and random
	// programs.
	f.Add([]byte{3, 0, 2, 0, 8, 0, 6, 0, 3, 1, 6, 1, 9, 0, 7, 0, 6, 1})
	f.Add([]byte{0, 0, 8, 0, 8, 0, 6, 0, 9, 0, 9, 0, 7, 0})
	f.Add([]byte{3, 4, 0, 0, 8, 0, 5, 0, 5, 3, 9, 0, 5, 0, 5, 0})
	f.Add([]byte{0, 0, 8, 0, 3, 1, 3, 2, 5, 4, 5, 0, 5, 4, 9, 0, 1, 0, 7, 1})
	rng := rand.New(rand.NewPCG(3, 4))
	for range 12 {
		b := make([]byte, 40+rng.IntN(200))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		f.Add(b)
	}
	f.Fuzz(runProgram)
}

// TestContext_randomPrograms runs fixed-seed random programs through the
// model, so every go test does what FuzzContext does.
func TestContext_randomPrograms(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 99))
		b := make([]byte, 400)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		runProgram(t, b)
		if t.Failed() {
			t.Fatalf("seed %d", seed)
		}
	}
}
