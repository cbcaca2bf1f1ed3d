#!/usr/bin/env python3
"""Reference interpreter for cpython_diff_test.go.

Reads programs on stdin and runs each against CPython's contextvars, printing
one line per observable event; the Go test runs the same programs against
this module's API and compares the traces line by line.

Input: programs, each a line "program NAME", then one op per line, then
"end". A line ending in "{" opens a block (the body of run, call, spawn or
withset) that ends at a line "}". Output: for each program a line
"program NAME", its trace, and a line "end".

Ops (V, C and T are the program's tables of vars, contexts and tokens, by
slot number; a value is an int or None):

  newvar V NAME          V = ContextVar(NAME)
  newvard V NAME X       V = ContextVar(NAME, default=X)
  get V                  var.get()
  getor V X              var.get(X)
  set V X T              T = var.set(X)
  reset V T              var.reset(T)
  treset T               T.var.reset(T)   (Go: Token.Reset)
  resetnil V             var.reset(None)  (Go: Var.Reset(nil))
  old T                  T.old_value
  tokvar T V             T.var is V
  newctx C               C = Context()
  copyctx C              C = copy_context()
  ctxcopy C D            C = D.copy()
  len C                  len(C)
  contains C V           V in C
  cget C V               C[V]
  in C V                 C.get(V, <absent>)  (Go: Var.In)
  items C                sorted items, keys and values of C
  iterset C V X T M      while iterating over C (M: items, keys or values),
                         T = V.set(X) at each step; prints what it saw, sorted
  setall X T             T+i = V[i].set(X) for every var slot i, in order
  name V                 V.name
  run C {                C.run(body)
  call C V {             C.run(body), which returns V.get(-1)  (Go: Call)
  spawn {                a thread that runs body in copy_context()  (Go: Go)
  withset V X T {        T = V.set(X), then body, then T.var.reset(T) in a
                         finally clause that prints its outcome and swallows
                         its error: Python 3.14's `with V.set(X):` but for
                         that (Go: defer T.Reset())
  runnil C               C.run(None)  (Go: Run(nil))
  raise                  raise out of the enclosing run  (Go: return an error)
  panic                  raise out of the enclosing run  (Go: panic)

Errors print as the exception's type, plus a tag for the cases the Go API
names: ":used", ":var", ":context" (Token errors), ":entered" (Context.run).
"""

import contextvars
import sys
import threading


class Boom(Exception):
    """Raised by the raise and panic ops, caught by the enclosing run."""


PHRASES = [
    ("has already been used once", "used"),
    ("was created by a different ContextVar", "var"),
    ("was created in a different Context", "context"),
    ("is already entered", "entered"),
]

ABSENT = object()

# The argument that names a var, and the ops whose first argument names a
# context.
VAR_ARG = {
    "get": 0, "getor": 0, "set": 0, "reset": 0, "resetnil": 0,
    "tokvar": 1, "contains": 1, "cget": 1, "in": 1, "call": 1,
    "iterset": 1, "name": 0,
}
CTX_ARG = {"run", "call", "runnil", "len", "contains", "cget", "in", "items", "iterset"}


def tag(e):
    name = type(e).__name__
    msg = str(e)
    for phrase, t in PHRASES:
        if phrase in msg:
            return name + ":" + t
    return name


def show(v):
    if v is None:
        return "None"
    if type(v) is int:
        return str(v)
    return "?" + repr(v)


def val(s):
    return None if s == "None" else int(s)


def parse(lines, i):
    """Parses ops from lines[i:] up to "}" or "end"; returns (ops, next i)."""
    ops = []
    while i < len(lines):
        f = lines[i].split()
        i += 1
        if not f:
            continue
        if f[0] in ("}", "end"):
            return ops, i
        if f[-1] == "{":
            body, i = parse(lines, i)
            ops.append((f[0], f[1:-1], body))
        else:
            ops.append((f[0], f[1:], None))
    return ops, i


class Program:
    def __init__(self):
        self.V = {}
        self.C = {}
        self.T = {}
        self.out = []

    def emit(self, s):
        self.out.append(s)

    def block(self, ops):
        for op in ops:
            if op[0] == "withset":
                self.withset(*op)
            else:
                self.op(*op)

    def withset(self, name, a, body):
        line = " ".join([name] + a)
        var = self.V.get(int(a[0]))
        if var is None:
            self.emit(line + " -> novar")
            return
        t = var.set(val(a[1]))
        self.T[int(a[2])] = t
        self.emit(line + " -> begin")
        try:
            self.block(body)
        finally:
            try:
                t.var.reset(t)
                r = "ok"
            except Exception as e:
                r = "EXC " + tag(e)
            self.emit(line + " -> exit " + r)

    def op(self, name, a, body):
        line = " ".join([name] + a)
        try:
            r = self.do(name, a, body)
        except Boom:
            raise
        except Exception as e:
            r = "EXC " + tag(e)
        if r is not None:
            self.emit(line + " -> " + r)

    def do(self, name, a, body):
        V, C, T = self.V, self.C, self.T
        if name == "newvar":
            V[int(a[0])] = contextvars.ContextVar(a[1])
            return "ok"
        if name == "newvard":
            V[int(a[0])] = contextvars.ContextVar(a[1], default=val(a[2]))
            return "ok"
        # Empty slots (a shrunk program may name them) are checked in this
        # order: context, var, token.
        if name in CTX_ARG:
            ctx = C.get(int(a[0]))
            if ctx is None:
                return "noctx"
        if name in VAR_ARG:
            var = V.get(int(a[VAR_ARG[name]]))
            if var is None:
                return "novar"
        if name in ("reset", "treset", "old", "tokvar"):
            t = T.get(int(a[1] if name == "reset" else a[0]))
            if t is None:
                return "notoken"
        if name == "get":
            try:
                return show(var.get())
            except LookupError:
                return "LookupError"
        if name == "getor":
            return show(var.get(val(a[1])))
        if name == "set":
            T[int(a[2])] = var.set(val(a[1]))
            return "ok"
        if name == "reset":
            var.reset(t)
            return "ok"
        if name == "treset":
            t.var.reset(t)
            return "ok"
        if name == "resetnil":
            var.reset(None)
            return "ok"
        if name == "old":
            if t.old_value is contextvars.Token.MISSING:
                return "MISSING"
            return show(t.old_value)
        if name == "tokvar":
            return str(t.var is var)
        if name == "newctx":
            C[int(a[0])] = contextvars.Context()
            return "ok"
        if name == "copyctx":
            C[int(a[0])] = contextvars.copy_context()
            return "ok"
        if name == "ctxcopy":
            src = C.get(int(a[1]))
            if src is None:
                return "noctx"
            C[int(a[0])] = src.copy()
            return "ok"
        if name == "len":
            return str(len(ctx))
        if name == "contains":
            return str(var in ctx)
        if name == "cget":
            try:
                return show(ctx[var])
            except KeyError:
                return "KeyError"
        if name == "in":
            x = ctx.get(var, ABSENT)
            return "absent" if x is ABSENT else show(x)
        if name == "items":
            index = {id(v): i for i, v in V.items()}
            items = sorted("v%d=%s" % (index[id(k)], show(x)) for k, x in ctx.items())
            keys = sorted("v%d" % index[id(k)] for k in ctx.keys())
            values = sorted(show(x) for x in ctx.values())
            return "[%s] keys [%s] values [%s]" % (" ".join(items), " ".join(keys), " ".join(values))
        if name == "iterset":
            index = {id(v): i for i, v in V.items()}
            x, mode, seen = val(a[2]), a[4], []
            if mode == "items":
                for k, y in ctx.items():
                    seen.append("v%d=%s" % (index[id(k)], show(y)))
                    T[int(a[3])] = var.set(x)
            elif mode == "keys":
                for k in ctx:
                    seen.append("v%d" % index[id(k)])
                    T[int(a[3])] = var.set(x)
            else:
                for y in ctx.values():
                    seen.append(show(y))
                    T[int(a[3])] = var.set(x)
            return "[%s]" % " ".join(sorted(seen))
        if name == "setall":
            for i in sorted(V):
                T[int(a[1]) + i] = V[i].set(val(a[0]))
            return "ok"
        if name == "name":
            return var.name
        if name == "run":
            return self.run(ctx, "run " + a[0], body, None)
        if name == "call":
            return self.run(ctx, "call " + a[0], body, var)
        if name == "runnil":
            try:
                ctx.run(None)
            except Exception:
                return "error"
            return "ok"
        if name == "spawn":
            ctx = contextvars.copy_context()
            errs = []

            def target():
                try:
                    ctx.run(self.spawned, body)
                except BaseException as e:  # a harness bug: make it show
                    errs.append("EXC " + tag(e))

            th = threading.Thread(target=target)
            th.start()
            th.join()
            return errs[0] if errs else "end"
        if name in ("raise", "panic"):
            raise Boom()
        raise ValueError("unknown op " + name)

    def spawned(self, body):
        self.emit("spawn -> begin")
        self.block(body)

    def run(self, ctx, head, body, var):
        def fn():
            self.emit(head + " -> begin")
            self.block(body)
            if var is not None:
                return show(var.get(-1))
            return None

        try:
            r = ctx.run(fn)
        except Boom:
            return "end raised"
        except Exception as e:
            return "end " + tag(e)
        if var is not None:
            return "end ok " + r
        return "end ok"


def main():
    lines = sys.stdin.read().split("\n")
    i = 0
    out = sys.stdout
    while i < len(lines):
        f = lines[i].split()
        i += 1
        if not f:
            continue
        if f[0] != "program":
            raise SystemExit("cpython_diff.py: expected a program line, got %r" % lines[i - 1])
        ops, i = parse(lines, i)
        p = Program()
        errs = []

        def top():
            try:
                p.block(ops)
            except BaseException as e:  # a harness bug: make it show
                errs.append(e)

        # A fresh thread starts in a fresh, empty context, as a fresh
        # goroutine does in Go.
        th = threading.Thread(target=top)
        th.start()
        th.join()
        out.write("program %s\n" % f[1])
        for s in p.out:
            out.write(s + "\n")
        for e in errs:
            out.write("PYERROR %s %r\n" % (type(e).__name__, e))
        out.write("end\n")
    out.flush()


if __name__ == "__main__":
    main()
