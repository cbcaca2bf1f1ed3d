package contextvars_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/go-contextvars/contextvars"
)

// This file holds TestCPythonDiff: a differential test against CPython
// itself. Random programs of contextvars operations run here against the
// package and in testdata/cpython_diff.py against Python's contextvars, and
// the traces of what each op observed must be equal, line by line. The
// program language is described in cpython_diff.py; the Go interpreter here
// reads the same text. The ops cover: vars of four types (int; any, holding
// nil as None; string; an array too large for a token to hold), with and
// without defaults, names repeated across vars; Get, GetOr, Set, Reset
// through the var and through the token (good, used, foreign-var and
// foreign-context tokens, nil), OldValue, Token.Var, Name; New, CopyContext,
// Copy; Run and Call nested, recursive (ErrAlreadyEntered), returning an
// error or panicking; Go, whose goroutine may run or read contexts its
// parent is inside; Len, Contains, Get, In, All, Keys, Values, and loops over
// a context that set vars as they go; `defer v.Set(x).Reset()` around a
// block. Programs run one after another: nothing here is concurrent but what
// a Go op's goroutine does while its parent waits.
//
// Environment:
//
//	CONTEXTVARS_LONG=1          many more programs (and a seed from the clock)
//	CONTEXTVARS_DIFF_SEED=n     the base seed (program i uses PCG(n, i))
//	CONTEXTVARS_DIFF_N=n        the number of programs
//	CONTEXTVARS_DIFF_PROGRAM=f  run the one program in file f instead

// diffPython returns the path of python3, skipping t if there is none. (A
// python3 without contextvars, older than 3.7, fails the test.)
func diffPython(t *testing.T) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not on PATH")
	}
	return py
}

// diffResolve returns the interpreter that py runs: python3 may be a
// launcher script (pyenv's shim takes a good part of a second to start),
// and a test that starts python3 many times starts the interpreter
// itself. It returns py if it cannot tell.
func diffResolve(py string) string {
	out, err := exec.Command(py, "-c", "import sys; print(sys.executable)").Output()
	if exe := strings.TrimSpace(string(out)); err == nil && exe != "" {
		return exe
	}
	return py
}

// diffEnvInt returns the integer in the environment variable name, or def.
func diffEnvInt(t *testing.T, name string, def uint64) uint64 {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.ParseUint(s, 10, 64)
	require.NoError(t, err, name)
	return n
}

// TestCPythonDiff runs random programs against the package and against
// CPython, and compares their traces.
func TestCPythonDiff(t *testing.T) {
	py := diffPython(t)
	long := contextvars.Long()

	if f := os.Getenv("CONTEXTVARS_DIFF_PROGRAM"); f != "" {
		text, err := os.ReadFile(f)
		require.NoError(t, err)
		p := string(text)
		if !strings.HasPrefix(p, "program ") {
			p = "program replay\n" + p
		}
		if !strings.HasSuffix(p, "\n") {
			p += "\n"
		}
		if !strings.Contains(p, "\nend\n") {
			p += "end\n"
		}
		diffCompare(t, py, "replay", []string{p}, 1)
		return
	}

	n := uint64(500)
	seed := uint64(1)
	switch {
	case testing.Short():
		n = 100
	case long:
		n = 20000
		seed = uint64(time.Now().UnixNano())
	}
	n = diffEnvInt(t, "CONTEXTVARS_DIFF_N", n)
	seed = diffEnvInt(t, "CONTEXTVARS_DIFF_SEED", seed)
	t.Logf("seed %d, %d programs (CONTEXTVARS_DIFF_SEED=%d CONTEXTVARS_DIFF_N=%d to repeat)", seed, n, seed, n)

	const batch = 1000 // programs per python3 process
	if n > batch {
		py = diffResolve(py)
	}
	failed := 0
	for lo := uint64(0); lo < n && failed < 3; lo += batch {
		hi := min(lo+batch, n)
		progs := make([]string, 0, hi-lo)
		for i := lo; i < hi; i++ {
			progs = append(progs, diffGenerate(seed, i))
		}
		failed += diffCompare(t, py, fmt.Sprint("seed ", seed), progs, 3-failed)
	}
}

// diffCompare runs progs in Go and in CPython and reports up to maxFail
// programs whose traces differ, each with a shrunk version; it returns how
// many it reported.
func diffCompare(t *testing.T, py, what string, progs []string, maxFail int) int {
	t.Helper()
	var (
		pyOut []diffTrace
		pyErr error
		wg    sync.WaitGroup
	)
	wg.Go(func() { pyOut, pyErr = diffRunPython(py, progs) })
	goOut := make([]diffTrace, len(progs))
	for i, p := range progs {
		goOut[i] = diffRunGo(p)
	}
	wg.Wait()
	require.NoError(t, pyErr)
	require.Len(t, pyOut, len(progs), "python3 traces")

	failed := 0
	for i, p := range progs {
		require.Equal(t, goOut[i].name, pyOut[i].name, "program order")
		line, ok := diffFirst(goOut[i].lines, pyOut[i].lines)
		if ok {
			continue
		}
		failed++
		if failed == 1 {
			py = diffResolve(py) // for the shrinking
		}
		small := diffShrink(py, p)
		t.Errorf("%s, program %s: traces differ at trace line %d\n"+
			"  Go:      %s\n  CPython: %s\n"+
			"program:\n%s\nGo trace:\n%s\nCPython trace:\n%s\n"+
			"shrunk program (CONTEXTVARS_DIFF_PROGRAM=file replays it):\n%s\n%s",
			what, goOut[i].name, line+1,
			diffAt(goOut[i].lines, line), diffAt(pyOut[i].lines, line),
			diffNumbered(p), diffNumbered(strings.Join(goOut[i].lines, "\n")),
			diffNumbered(strings.Join(pyOut[i].lines, "\n")),
			small, diffBoth(py, small))
		if failed >= maxFail {
			break
		}
	}
	return failed
}

// diffTrace is the trace of one program.
type diffTrace struct {
	name  string
	lines []string
}

// diffFirst returns the index of the first line where a and b differ, and
// false, or true if they are equal.
func diffFirst(a, b []string) (int, bool) {
	for i := range max(len(a), len(b)) {
		if i >= len(a) || i >= len(b) || a[i] != b[i] {
			return i, false
		}
	}
	return 0, true
}

// diffAt returns lines[i], or a note that the trace has ended.
func diffAt(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "(end of trace)"
}

// diffNumbered returns s with its lines numbered and indented.
func diffNumbered(s string) string {
	var b strings.Builder
	for i, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		fmt.Fprintf(&b, "  %3d  %s\n", i+1, l)
	}
	return b.String()
}

// diffRunPython runs progs in one python3 process and returns their traces.
func diffRunPython(py string, progs []string) ([]diffTrace, error) {
	cmd := exec.Command(py, "testdata/cpython_diff.py")
	cmd.Stdin = strings.NewReader(strings.Join(progs, ""))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("python3 testdata/cpython_diff.py: %v\n%s", err, stderr.String())
	}
	var traces []diffTrace
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "program "):
			traces = append(traces, diffTrace{name: strings.TrimPrefix(l, "program ")})
		case l == "end":
		case len(traces) == 0:
			return nil, fmt.Errorf("python3: output before the first program: %q", l)
		default:
			tr := &traces[len(traces)-1]
			tr.lines = append(tr.lines, l)
		}
	}
	return traces, sc.Err()
}

// diffBoth returns the traces of the program p in Go and in CPython side by
// side, for a report.
func diffBoth(py, p string) string {
	tr, err := diffRunPython(py, []string{p})
	if err != nil || len(tr) != 1 {
		return fmt.Sprintf("(python3: %v)", err)
	}
	g := diffRunGo(p)
	var b strings.Builder
	b.WriteString("  Go trace | CPython trace:\n")
	for i := range max(len(g.lines), len(tr[0].lines)) {
		mark := " "
		if diffAt(g.lines, i) != diffAt(tr[0].lines, i) {
			mark = "*"
		}
		fmt.Fprintf(&b, "  %s %-45s | %s\n", mark, diffAt(g.lines, i), diffAt(tr[0].lines, i))
	}
	return b.String()
}

// Programs as text and as trees.

// diffOp is one op of a program: its name, its arguments and, for run,
// call and spawn, its body.
type diffOp struct {
	name string
	args []string
	body []diffOp
	line int // 0-based line of the op in its program, for shrinking
}

// diffParse parses a program's text, as cpython_diff.py does: it returns
// the program's name and ops.
func diffParse(p string) (string, []diffOp) {
	lines := strings.Split(p, "\n")
	name := strings.TrimPrefix(lines[0], "program ")
	var parse func(i int) ([]diffOp, int)
	parse = func(i int) ([]diffOp, int) {
		var ops []diffOp
		for i < len(lines) {
			f := strings.Fields(lines[i])
			i++
			if len(f) == 0 {
				continue
			}
			if f[0] == "}" || f[0] == "end" {
				return ops, i
			}
			op := diffOp{name: f[0], args: f[1:], line: i - 1}
			if f[len(f)-1] == "{" {
				op.args = f[1 : len(f)-1]
				op.body, i = parse(i)
			}
			ops = append(ops, op)
		}
		return ops, i
	}
	ops, _ := parse(1)
	return name, ops
}

// diffShrink returns a smaller program than p whose traces still differ:
// it removes one op (with its body, if any), or a block op around its body,
// at a time for as long as some removal keeps a difference, trying each
// round's candidates in one python3 process.
func diffShrink(py, p string) string {
	for range 200 {
		lines := strings.Split(strings.TrimRight(p, "\n"), "\n")
		_, ops := diffParse(p)
		var spans [][2]int // [first, last] lines of each op
		var walk func(ops []diffOp)
		walk = func(ops []diffOp) {
			for _, op := range ops {
				last := op.line
				if op.body != nil || strings.HasSuffix(lines[op.line], "{") {
					last = diffBlockEnd(lines, op.line)
				}
				spans = append(spans, [2]int{op.line, last})
				walk(op.body)
			}
		}
		walk(ops)
		var cands []string
		for _, s := range spans {
			cands = append(cands, diffIndent(slices.Concat(lines[:s[0]], lines[s[1]+1:])))
		}
		for _, s := range spans {
			if s[1] > s[0] { // a block: keep its body, drop the op around it
				cands = append(cands, diffIndent(slices.Concat(lines[:s[0]], lines[s[0]+1:s[1]], lines[s[1]+1:])))
			}
		}
		if len(cands) == 0 {
			return p
		}
		tr, err := diffRunPython(py, cands)
		if err != nil || len(tr) != len(cands) {
			return p
		}
		shrunk := false
		for i, c := range cands {
			if _, same := diffFirst(diffRunGo(c).lines, tr[i].lines); !same {
				p, shrunk = c, true
				break
			}
		}
		if !shrunk {
			return p
		}
	}
	return p
}

// diffIndent returns the program of the given lines, indented anew.
func diffIndent(lines []string) string {
	var b strings.Builder
	depth := 0
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "}" {
			depth--
		}
		b.WriteString(strings.Repeat("  ", max(depth, 0)) + l + "\n")
		if strings.HasSuffix(l, "{") {
			depth++
		}
	}
	return b.String()
}

// diffBlockEnd returns the line of the "}" that closes the block opened at
// lines[open].
func diffBlockEnd(lines []string, open int) int {
	depth := 0
	for i := open; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if strings.HasSuffix(l, "{") {
			depth++
		} else if l == "}" {
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return len(lines) - 1
}

// The Go interpreter.

// diffVal is a value of a program: an int, or None (nil, for vars of kind
// "any" only).
type diffVal struct {
	none bool
	n    int
}

func diffParseVal(s string) diffVal {
	if s == "None" {
		return diffVal{none: true}
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		panic("cpython diff: bad value " + strconv.Quote(s))
	}
	return diffVal{n: n}
}

// diffVar is a var of some type, with the ops of a program on it; values
// cross it as diffVals and come out rendered as Python prints them.
type diffVar interface {
	key() contextvars.Key
	get() string
	getOr(x diffVal) string
	set(x diffVal) diffTok
	reset(t diffTok) error
	resetNil() error
	in(c *contextvars.Context) string
	show(x any) string
}

// diffTok is a token of some type.
type diffTok interface {
	oldValue() string
	reset() error
	varIs(v diffVar) bool
}

// diffTypedVar is a diffVar of a Var[T]; to and from convert values.
type diffTypedVar[T any] struct {
	v    *contextvars.Var[T]
	to   func(diffVal) T
	from func(T) string
}

type diffTypedTok[T any] struct {
	t *contextvars.Token[T]
	v *diffTypedVar[T]
}

func (v *diffTypedVar[T]) key() contextvars.Key { return v.v }

func (v *diffTypedVar[T]) get() string {
	x, ok := v.v.Get()
	if !ok {
		return "LookupError"
	}
	return v.from(x)
}

func (v *diffTypedVar[T]) getOr(x diffVal) string { return v.from(v.v.GetOr(v.to(x))) }

func (v *diffTypedVar[T]) set(x diffVal) diffTok {
	return &diffTypedTok[T]{t: v.v.Set(v.to(x)), v: v}
}

func (v *diffTypedVar[T]) reset(t diffTok) error {
	tt, ok := t.(*diffTypedTok[T])
	if !ok {
		return errDiffHarness // the generator pairs vars and tokens of one type
	}
	return v.v.Reset(tt.t)
}

func (v *diffTypedVar[T]) resetNil() error { return v.v.Reset(nil) }

func (v *diffTypedVar[T]) in(c *contextvars.Context) string {
	x, ok := v.v.In(c)
	if !ok {
		return "absent"
	}
	return v.from(x)
}

func (v *diffTypedVar[T]) show(x any) string {
	if x == nil {
		var zero T
		if _, isAny := any(&zero).(*any); isAny {
			return v.from(zero)
		}
		return "?nil"
	}
	t, ok := x.(T)
	if !ok {
		return fmt.Sprintf("?%T(%v)", x, x)
	}
	return v.from(t)
}

func (t *diffTypedTok[T]) oldValue() string {
	x, ok := t.t.OldValue()
	if !ok {
		return "MISSING"
	}
	return t.v.from(x)
}

func (t *diffTypedTok[T]) reset() error { return t.t.Reset() }

func (t *diffTypedTok[T]) varIs(v diffVar) bool {
	tv, ok := v.(*diffTypedVar[T])
	return ok && t.t.Var() == tv.v
}

// diffBig is the value type of vars of kind "big": larger than a token
// keeps inline, without pointers.
type diffBig [6]int

// diffNewVar returns a new var of the given kind ("int", "any", "str",
// "big"), with the default def if hasDef.
func diffNewVar(kind, name string, def diffVal, hasDef bool) diffVar {
	switch kind {
	case "int":
		return diffMakeVar(name, def, hasDef, func(x diffVal) int { return x.n }, strconv.Itoa)
	case "any":
		return diffMakeVar(name, def, hasDef,
			func(x diffVal) any {
				if x.none {
					return nil
				}
				return x.n
			},
			func(x any) string {
				switch x := x.(type) {
				case nil:
					return "None"
				case int:
					return strconv.Itoa(x)
				}
				return fmt.Sprintf("?%T(%v)", x, x)
			})
	case "str":
		return diffMakeVar(name, def, hasDef, func(x diffVal) string { return strconv.Itoa(x.n) },
			func(s string) string {
				if _, err := strconv.Atoi(s); err != nil {
					return "?" + strconv.Quote(s)
				}
				return s
			})
	case "big":
		return diffMakeVar(name, def, hasDef,
			func(x diffVal) diffBig {
				var b diffBig
				for i := range b {
					b[i] = x.n + i
				}
				return b
			},
			func(b diffBig) string {
				for i := range b {
					if b[i] != b[0]+i {
						return fmt.Sprintf("?%v", b)
					}
				}
				return strconv.Itoa(b[0])
			})
	}
	panic("cpython diff: bad var kind " + strconv.Quote(kind))
}

func diffMakeVar[T any](name string, def diffVal, hasDef bool, to func(diffVal) T, from func(T) string) diffVar {
	v := &diffTypedVar[T]{to: to, from: from}
	if hasDef {
		v.v = contextvars.NewVarWithDefault(name, to(def))
	} else {
		v.v = contextvars.NewVar[T](name)
	}
	return v
}

var (
	// errDiffBoom is what a raise op returns from a Run's fn.
	errDiffBoom = errors.New("boom")
	// errDiffHarness marks a program the interpreter cannot run.
	errDiffHarness = errors.New("harness: var and token of different types")
)

// diffPanic is what a panic op panics with.
type diffPanic struct{}

// diffProgram is a program being run: its tables and its trace. The trace
// is appended to by one goroutine at a time (a spawn op waits for its
// goroutine).
type diffProgram struct {
	vars  map[int]diffVar
	ctxs  map[int]*contextvars.Context
	toks  map[int]diffTok
	trace []string
}

func (p *diffProgram) emit(s string) { p.trace = append(p.trace, s) }

// diffRunGo runs the program p on a new goroutine, whose implicit context
// starts empty as a new Python thread's does, and returns its trace.
func diffRunGo(p string) diffTrace {
	name, ops := diffParse(p)
	pr := &diffProgram{vars: map[int]diffVar{}, ctxs: map[int]*contextvars.Context{}, toks: map[int]diffTok{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if pr.uncaught(func() bool { return pr.block(ops) }) {
			// Python's thread dies of the exception: its runner prints it.
			pr.emit("PYERROR Boom Boom()")
		}
	}()
	<-done
	return diffTrace{name: name, lines: pr.trace}
}

// uncaught calls fn and reports whether it raised (returned true or
// panicked with diffPanic).
func (p *diffProgram) uncaught(fn func() bool) (raised bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(diffPanic); !ok {
				panic(r)
			}
			raised = true
		}
	}()
	return fn()
}

// block runs ops and reports whether a raise op ended it (a panic op
// panics).
func (p *diffProgram) block(ops []diffOp) (raised bool) {
	for _, op := range ops {
		if op.name == "raise" {
			return true
		}
		if op.name == "panic" {
			panic(diffPanic{})
		}
		if op.name == "withset" {
			if p.withSet(op) {
				return true
			}
			continue
		}
		if r := p.op(op); r != "" {
			p.emit(strings.Join(append([]string{op.name}, op.args...), " ") + " -> " + r)
		}
	}
	return false
}

// withSet runs a withset op: Set, the body, and a deferred Token.Reset,
// as `defer v.Set(x).Reset()` does, whose outcome it prints. It reports
// whether the body raised (a panic goes on).
func (p *diffProgram) withSet(op diffOp) (raised bool) {
	line := strings.Join(append([]string{op.name}, op.args...), " ")
	n, err := strconv.Atoi(op.args[0])
	if err != nil {
		panic("cpython diff: bad slot in withset")
	}
	v := p.vars[n]
	if v == nil {
		p.emit(line + " -> novar")
		return false
	}
	slot, err := strconv.Atoi(op.args[2])
	if err != nil {
		panic("cpython diff: bad slot in withset")
	}
	t := v.set(diffParseVal(op.args[1]))
	p.toks[slot] = t
	p.emit(line + " -> begin")
	defer func() { p.emit(line + " -> exit " + diffErr(t.reset())) }()
	return p.block(op.body)
}

// diffVarArg is the index of the argument that names a var, per op.
var diffVarArg = map[string]int{
	"get": 0, "getor": 0, "set": 0, "reset": 0, "resetnil": 0,
	"tokvar": 1, "contains": 1, "cget": 1, "in": 1, "call": 1,
	"iterset": 1, "name": 0,
}

// diffCtxArg is the set of ops whose first argument names a context.
var diffCtxArg = map[string]bool{
	"run": true, "call": true, "runnil": true, "len": true,
	"contains": true, "cget": true, "in": true, "items": true,
	"iterset": true,
}

// op runs one op other than raise and panic and returns its result line.
func (p *diffProgram) op(op diffOp) string {
	a := op.args
	num := func(i int) int {
		n, err := strconv.Atoi(a[i])
		if err != nil {
			panic("cpython diff: bad slot in " + op.name)
		}
		return n
	}
	switch op.name {
	case "newvar":
		p.vars[num(0)] = diffNewVar(diffKind(a[1]), a[1], diffVal{}, false)
		return "ok"
	case "newvard":
		p.vars[num(0)] = diffNewVar(diffKind(a[1]), a[1], diffParseVal(a[2]), true)
		return "ok"
	}
	var c *contextvars.Context
	if diffCtxArg[op.name] {
		if c = p.ctxs[num(0)]; c == nil {
			return "noctx"
		}
	}
	var v diffVar
	if i, ok := diffVarArg[op.name]; ok {
		if v = p.vars[num(i)]; v == nil {
			return "novar"
		}
	}
	var t diffTok
	switch op.name {
	case "reset", "treset", "old", "tokvar":
		i := 0
		if op.name == "reset" {
			i = 1
		}
		if t = p.toks[num(i)]; t == nil {
			return "notoken"
		}
	}
	switch op.name {
	case "get":
		return v.get()
	case "getor":
		return v.getOr(diffParseVal(a[1]))
	case "set":
		p.toks[num(2)] = v.set(diffParseVal(a[1]))
		return "ok"
	case "reset":
		return diffErr(v.reset(t))
	case "treset":
		return diffErr(t.reset())
	case "resetnil":
		return diffErr(v.resetNil())
	case "old":
		return t.oldValue()
	case "tokvar":
		return diffBool(t.varIs(v))
	case "newctx":
		p.ctxs[num(0)] = contextvars.New()
		return "ok"
	case "copyctx":
		p.ctxs[num(0)] = contextvars.CopyContext()
		return "ok"
	case "ctxcopy":
		src := p.ctxs[num(1)]
		if src == nil {
			return "noctx"
		}
		p.ctxs[num(0)] = src.Copy()
		return "ok"
	case "len":
		return strconv.Itoa(c.Len())
	case "contains":
		return diffBool(c.Contains(v.key()))
	case "cget":
		x, ok := c.Get(v.key())
		if !ok {
			return "KeyError"
		}
		return v.show(x)
	case "in":
		return v.in(c)
	case "items":
		return p.items(c)
	case "iterset":
		return p.iterSet(c, v, diffParseVal(a[2]), num(3), a[4])
	case "setall":
		x := diffParseVal(a[0])
		for _, i := range slices.Sorted(maps.Keys(p.vars)) { // as Python's sorted(V)
			p.toks[num(1)+i] = p.vars[i].set(x)
		}
		return "ok"
	case "name":
		return v.key().Name()
	case "run", "call":
		return p.run(c, op, v)
	case "runnil":
		if c.Run(nil) != nil {
			return "error"
		}
		return "ok"
	case "spawn":
		return p.spawn(op.body)
	}
	panic("cpython diff: unknown op " + strconv.Quote(op.name))
}

// diffKind returns the kind of a var from its name: the generator names
// vars <kind><n>.
func diffKind(name string) string {
	for _, k := range []string{"int", "any", "str", "big"} {
		if strings.HasPrefix(name, k) {
			return k
		}
	}
	panic("cpython diff: var name of no kind " + strconv.Quote(name))
}

// items returns c's items, keys and values, each sorted, vars named by
// their slots, and checks that the three agree with each other and Len.
func (p *diffProgram) items(c *contextvars.Context) string {
	slot := map[contextvars.Key]int{}
	for i, v := range p.vars {
		slot[v.key()] = i
	}
	name := func(k contextvars.Key) string {
		i, ok := slot[k]
		if !ok {
			return fmt.Sprintf("?%v", k)
		}
		return fmt.Sprint("v", i)
	}
	var items, keys, values []string
	for k, x := range c.All() {
		s := "?"
		if i, ok := slot[k]; ok {
			s = p.vars[i].show(x)
		}
		items = append(items, name(k)+"="+s)
	}
	for k := range c.Keys() {
		keys = append(keys, name(k))
	}
	for x := range c.Values() {
		values = append(values, p.showAny(x))
	}
	slices.Sort(items)
	slices.Sort(keys)
	slices.Sort(values)
	r := fmt.Sprintf("[%s] keys [%s] values [%s]", strings.Join(items, " "), strings.Join(keys, " "), strings.Join(values, " "))
	if n := c.Len(); n != len(items) || n != len(keys) || n != len(values) {
		r += fmt.Sprintf(" but Len %d", n)
	}
	return r
}

// showAny shows x, a value of some var of the program: Values does not say
// whose a value is, so x is shown as any var of its type would.
func (p *diffProgram) showAny(x any) string {
	for _, v := range p.vars {
		if s := v.show(x); !strings.HasPrefix(s, "?") {
			return s
		}
	}
	return fmt.Sprintf("?%T(%v)", x, x)
}

// iterSet ranges over c's All, Keys or Values (mode "items", "keys",
// "values") and sets v to x at each step, keeping the last token in slot
// tok; it returns what the loop saw, sorted.
func (p *diffProgram) iterSet(c *contextvars.Context, v diffVar, x diffVal, tok int, mode string) string {
	name := func(k contextvars.Key) string {
		for i, v := range p.vars {
			if v.key() == k {
				return fmt.Sprint("v", i)
			}
		}
		return fmt.Sprintf("?%v", k)
	}
	var seen []string
	switch mode {
	case "items":
		for k, y := range c.All() {
			s := fmt.Sprintf("?%T(%v)", y, y)
			for _, v := range p.vars {
				if v.key() == k {
					s = v.show(y)
				}
			}
			seen = append(seen, name(k)+"="+s)
			p.toks[tok] = v.set(x)
		}
	case "keys":
		for k := range c.Keys() {
			seen = append(seen, name(k))
			p.toks[tok] = v.set(x)
		}
	default:
		for y := range c.Values() {
			seen = append(seen, p.showAny(y))
			p.toks[tok] = v.set(x)
		}
	}
	slices.Sort(seen)
	return "[" + strings.Join(seen, " ") + "]"
}

// run runs op's body in c with Run, or with Call returning v's value (or
// -1) if op is a call.
func (p *diffProgram) run(c *contextvars.Context, op diffOp, v diffVar) string {
	head := op.name + " " + op.args[0] + " -> begin"
	var (
		res string
		err error
	)
	panicked := p.uncaught(func() bool {
		if op.name == "call" {
			res, err = contextvars.Call(c, func() (string, error) {
				p.emit(head)
				if p.block(op.body) {
					return "", errDiffBoom
				}
				return v.getOr(diffVal{n: -1}), nil
			})
		} else {
			err = c.Run(func() error {
				p.emit(head)
				if p.block(op.body) {
					return errDiffBoom
				}
				return nil
			})
		}
		return false
	})
	switch {
	case panicked || err == errDiffBoom:
		return "end raised"
	case err != nil:
		return "end " + diffTag(err)
	case op.name == "call":
		return "end ok " + res
	}
	return "end ok"
}

// spawn runs body in a goroutine started with Go and waits for it.
func (p *diffProgram) spawn(body []diffOp) string {
	done := make(chan bool)
	contextvars.Go(func() {
		raised := true
		defer func() { done <- raised }()
		raised = p.uncaught(func() bool {
			p.emit("spawn -> begin")
			return p.block(body)
		})
	})
	if <-done {
		return "EXC Boom"
	}
	return "end"
}

// diffErr returns the result of an op that returned err.
func diffErr(err error) string {
	if err == nil {
		return "ok"
	}
	return "EXC " + diffTag(err)
}

// diffTag returns Python's exception type for err, with the tag
// cpython_diff.py adds, and a note if its message does not read as the API
// says.
func diffTag(err error) string {
	kinds := []struct {
		sentinel    error
		tag, phrase string
	}{
		{contextvars.ErrTokenUsed, "RuntimeError:used", "has already been used once"},
		{contextvars.ErrTokenVar, "ValueError:var", "was created by a different ContextVar"},
		{contextvars.ErrTokenContext, "ValueError:context", "was created in a different Context"},
		{contextvars.ErrAlreadyEntered, "RuntimeError:entered", "is already entered"},
		{contextvars.ErrNilToken, "TypeError", "contextvars: "},
	}
	if err == errDiffHarness {
		return "HARNESS"
	}
	for _, k := range kinds {
		if errors.Is(err, k.sentinel) {
			msg := err.Error()
			if !strings.HasPrefix(msg, "contextvars: ") || !strings.Contains(msg, k.phrase) {
				return k.tag + " with message " + strconv.Quote(msg)
			}
			return k.tag
		}
	}
	return "GOERROR " + strconv.Quote(err.Error())
}

// The generator.

// diffGen generates one program. It keeps a model of the program's state
// rough enough to steer it: which context each slot holds, which contexts
// are entered, and where each token was made. The model need not be exact,
// since both interpreters run whatever it writes.
type diffGen struct {
	r      *rand.Rand
	b      strings.Builder
	indent int

	kinds   []string // per var slot
	toks    []diffGenTok
	ctxObj  map[int]int // context slot -> context object
	nextObj int
	entered map[int]bool // context objects entered
	budget  int
}

// diffGenTok is the model of a token slot.
type diffGenTok struct {
	v, obj     int
	live, used bool
}

const diffCtxSlots = 4

// diffGenerate returns the program number i of the given seed.
func diffGenerate(seed, i uint64) string {
	g := &diffGen{
		r:       rand.New(rand.NewPCG(seed, i)),
		ctxObj:  map[int]int{},
		nextObj: 1, // 0 is the goroutine's implicit context
		entered: map[int]bool{},
	}
	fmt.Fprintf(&g.b, "program %d-%d\n", seed, i)
	kinds := []string{"int", "int", "any", "str", "big"}
	nvars, budget := 2+g.r.IntN(5), 5+g.r.IntN(60)
	if g.r.IntN(6) == 0 {
		// Enough vars that the tries have inner nodes.
		nvars, budget = 12+g.r.IntN(30), 30+g.r.IntN(90)
	}
	for v := range nvars {
		k := kinds[g.r.IntN(len(kinds))]
		g.kinds = append(g.kinds, k)
		// Names repeat across vars: a var is its identity, not its name.
		name := fmt.Sprint(k, g.r.IntN(3))
		if g.r.IntN(2) == 0 {
			g.line("newvar %d %s", v, name)
		} else {
			g.line("newvard %d %s %s", v, name, g.value(v))
		}
	}
	g.budget = budget
	g.block(0, true, 0, false)
	g.b.WriteString("end\n")
	return g.b.String()
}

func (g *diffGen) line(format string, args ...any) {
	g.b.WriteString(strings.Repeat("  ", g.indent))
	fmt.Fprintf(&g.b, format, args...)
	g.b.WriteByte('\n')
}

// value returns a value for var v: a small int, or None for vars of kind
// "any".
func (g *diffGen) value(v int) string {
	if g.kinds[v] == "any" && g.r.IntN(6) == 0 {
		return "None"
	}
	return strconv.Itoa(g.r.IntN(10))
}

func (g *diffGen) anyVar() int { return g.r.IntN(len(g.kinds)) }

// ctx returns a context slot: usually a filled one whose context is not
// entered if notEntered, else any filled one; or -1 if none is filled.
func (g *diffGen) ctx(notEntered bool) int {
	var filled, free []int
	for s := range diffCtxSlots {
		if o, ok := g.ctxObj[s]; ok {
			filled = append(filled, s)
			if !g.entered[o] {
				free = append(free, s)
			}
		}
	}
	if notEntered && len(free) > 0 && g.r.IntN(8) != 0 {
		return free[g.r.IntN(len(free))]
	}
	if len(filled) == 0 {
		return -1
	}
	return filled[g.r.IntN(len(filled))]
}

// token returns a token slot for a Reset in context object cur, and the
// var to reset it through (one of the token's type): mostly a good pair,
// sometimes a used token, a token of another var or of another context.
// It returns -1 if there is no token.
func (g *diffGen) token(cur int) (tok, v int) {
	if len(g.toks) == 0 {
		return -1, -1
	}
	var good []int
	for i, t := range g.toks {
		if t.live && !t.used && t.obj == cur {
			good = append(good, i)
		}
	}
	if len(good) > 0 && g.r.IntN(5) < 3 {
		// Mostly the latest, as in the usual set/reset nesting.
		tok = good[len(good)-1]
		if g.r.IntN(3) == 0 {
			tok = good[g.r.IntN(len(good))]
		}
	} else {
		tok = g.r.IntN(len(g.toks))
	}
	v = g.toks[tok].v
	if g.r.IntN(8) == 0 {
		var same []int
		for i, k := range g.kinds {
			if k == g.kinds[v] && i != v {
				same = append(same, i)
			}
		}
		if len(same) > 0 {
			v = same[g.r.IntN(len(same))]
		}
	}
	return tok, v
}

// block writes the ops of a block that runs (if live) in context object
// cur, depth blocks deep; a block that may raise ends in raise or panic
// now and then.
func (g *diffGen) block(cur int, live bool, depth int, mayRaise bool) {
	n := 1 + g.r.IntN(8)
	if depth == 0 {
		n = g.budget
	}
	if !live {
		n = g.r.IntN(3)
	}
	for range n {
		if g.budget <= 0 {
			return
		}
		g.budget--
		if mayRaise && g.r.IntN(25) == 0 {
			if g.r.IntN(2) == 0 {
				g.line("raise")
			} else {
				g.line("panic")
			}
			return
		}
		g.op(cur, live, depth, mayRaise)
	}
}

// op writes one op other than raise and panic; mayRaise is passed on to
// the body of a withset, which runs in the same block.
func (g *diffGen) op(cur int, live bool, depth int, mayRaise bool) {
	type choice struct {
		w int
		f func() bool // false: not possible now
	}
	newObj := func() int { g.nextObj++; return g.nextObj - 1 }
	setCtx := func(s int) {
		if live {
			g.ctxObj[s] = newObj()
		}
	}
	ctxRead := func(op string, withVar bool) func() bool {
		return func() bool {
			c := g.ctx(false)
			if c < 0 {
				return false
			}
			if withVar {
				g.line("%s %d %d", op, c, g.anyVar())
			} else {
				g.line("%s %d", op, c)
			}
			return true
		}
	}
	choices := []choice{
		{10, func() bool { g.line("get %d", g.anyVar()); return true }},
		{4, func() bool { v := g.anyVar(); g.line("getor %d %s", v, g.value(v)); return true }},
		{14, func() bool {
			v := g.anyVar()
			g.line("set %d %s %d", v, g.value(v), len(g.toks))
			g.toks = append(g.toks, diffGenTok{v: v, obj: cur, live: live})
			return true
		}},
		{12, func() bool {
			tok, v := g.token(cur)
			if tok < 0 {
				return false
			}
			t := &g.toks[tok]
			if g.r.IntN(2) == 0 && v == t.v {
				g.line("treset %d", tok)
			} else {
				g.line("reset %d %d", v, tok)
			}
			if live && t.live && !t.used && v == t.v && t.obj == cur {
				t.used = true
			}
			return true
		}},
		{1, func() bool { g.line("resetnil %d", g.anyVar()); return true }},
		{1, func() bool { g.line("name %d", g.anyVar()); return true }},
		{2, func() bool {
			g.line("setall %d %d", g.r.IntN(10), len(g.toks))
			for v := range g.kinds {
				g.toks = append(g.toks, diffGenTok{v: v, obj: cur, live: live})
			}
			return true
		}},
		{2, func() bool {
			c := g.ctx(false)
			if c < 0 {
				return false
			}
			// Mostly the current context: the loop sets vars in the
			// context it walks.
			for s, o := range g.ctxObj {
				if o == cur && g.r.IntN(3) != 0 {
					c = s
				}
			}
			v := g.anyVar()
			modes := []string{"items", "keys", "values"}
			g.line("iterset %d %d %s %d %s", c, v, g.value(v), len(g.toks), modes[g.r.IntN(3)])
			g.toks = append(g.toks, diffGenTok{v: v, obj: cur, live: live})
			return true
		}},
		{4, func() bool {
			if len(g.toks) == 0 {
				return false
			}
			g.line("old %d", g.r.IntN(len(g.toks)))
			return true
		}},
		{1, func() bool {
			if len(g.toks) == 0 {
				return false
			}
			g.line("tokvar %d %d", g.r.IntN(len(g.toks)), g.anyVar())
			return true
		}},
		{3, func() bool { s := g.r.IntN(diffCtxSlots); g.line("newctx %d", s); setCtx(s); return true }},
		{4, func() bool { s := g.r.IntN(diffCtxSlots); g.line("copyctx %d", s); setCtx(s); return true }},
		{3, func() bool {
			src := g.ctx(false)
			if src < 0 {
				return false
			}
			s := g.r.IntN(diffCtxSlots)
			g.line("ctxcopy %d %d", s, src)
			setCtx(s)
			return true
		}},
		{2, ctxRead("len", false)},
		{2, ctxRead("contains", true)},
		{2, ctxRead("cget", true)},
		{2, ctxRead("in", true)},
		{3, ctxRead("items", false)},
		{1, ctxRead("runnil", false)},
		{10, func() bool {
			if depth >= 4 {
				return false
			}
			c := g.ctx(true)
			if c < 0 {
				return false
			}
			obj := g.ctxObj[c]
			runs := live && !g.entered[obj]
			if g.r.IntN(4) == 0 {
				g.line("call %d %d {", c, g.anyVar())
			} else {
				g.line("run %d {", c)
			}
			g.indent++
			if runs {
				g.entered[obj] = true
			}
			g.block(obj, runs, depth+1, true)
			if runs {
				delete(g.entered, obj)
			}
			g.indent--
			g.line("}")
			return true
		}},
		{3, func() bool {
			if depth >= 4 {
				return false
			}
			v := g.anyVar()
			tok := len(g.toks)
			g.line("withset %d %s %d {", v, g.value(v), tok)
			g.toks = append(g.toks, diffGenTok{v: v, obj: cur, live: live})
			g.indent++
			g.block(cur, live, depth+1, mayRaise)
			g.indent--
			g.line("}")
			if live {
				g.toks[tok].used = true
			}
			return true
		}},
		{2, func() bool {
			if depth >= 3 {
				return false
			}
			g.line("spawn {")
			g.indent++
			g.block(newObj(), live, depth+1, false)
			g.indent--
			g.line("}")
			return true
		}},
	}
	total := 0
	for _, c := range choices {
		total += c.w
	}
	for {
		n := g.r.IntN(total)
		for _, c := range choices {
			if n < c.w {
				if c.f() {
					return
				}
				break
			}
			n -= c.w
		}
	}
}

// diffBool returns b as Python prints it.
func diffBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}
