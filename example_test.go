package contextvars_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/go-contextvars/contextvars"
)

// This example demonstrates Context.Run. It mirrors, step by step, the
// Context.run example of Python's contextvars documentation
// (https://docs.python.org/3/library/contextvars.html#contextvars.Context.run).
func ExampleContext_Run() {
	// Each example runs in a new context of its own, as the Python example
	// runs at the top of a fresh program.
	_ = contextvars.New().Run(func() error {
		v := contextvars.NewVar[string]("var")
		v.Set("spam")

		var ctx *contextvars.Context
		main := func() error {
			// 'var' was set to 'spam' before
			// calling 'copy_context()' and 'ctx.run(main)', so:
			got, _ := v.Get()
			fmt.Println(got) // 'spam'
			got, _ = v.In(ctx)
			fmt.Println(got) // 'spam'

			v.Set("ham")

			// Now, after setting 'var' to 'ham':
			got, _ = v.Get()
			fmt.Println(got) // 'ham'
			got, _ = v.In(ctx)
			fmt.Println(got) // 'ham'
			return nil
		}
		ctx = contextvars.CopyContext()

		// Any changes that the 'main' function makes to 'var'
		// will be contained in 'ctx'.
		_ = ctx.Run(main)

		// The 'main()' function was run in the 'ctx' context,
		// so changes to 'var' are contained in it:
		got, _ := v.In(ctx)
		fmt.Println(got) // 'ham'

		// However, outside of 'ctx', 'var' is still set to 'spam':
		got, _ = v.Get()
		fmt.Println(got) // 'spam'
		return nil
	})
	// Output:
	// spam
	// spam
	// ham
	// ham
	// ham
	// spam
}

// This example demonstrates a scoped Set, Python 3.14's `with var.set(x):`.
func ExampleToken_Reset() {
	_ = contextvars.New().Run(func() error {
		locale := contextvars.NewVarWithDefault("locale", "en")

		greet := func() {
			l, _ := locale.Get()
			fmt.Println("locale:", l)
		}
		func() {
			defer locale.Set("fr").Reset()
			greet()
		}()
		greet()
		return nil
	})
	// Output:
	// locale: fr
	// locale: en
}

// This example demonstrates Var.Reset with the token of a Set, and what the
// token records.
func ExampleVar_Reset() {
	_ = contextvars.New().Run(func() error {
		v := contextvars.NewVar[int]("v")
		t1 := v.Set(1)
		t2 := v.Set(2)
		old, ok := t2.OldValue()
		fmt.Println("t2 old value:", old, ok)
		_, ok = t1.OldValue()
		fmt.Println("t1 had an old value:", ok) // Token.MISSING

		_ = v.Reset(t2)
		got, _ := v.Get()
		fmt.Println("after reset t2:", got)
		_ = v.Reset(t1)
		_, ok = v.Get()
		fmt.Println("set after reset t1:", ok)

		err := v.Reset(t1)
		fmt.Println(errors.Is(err, contextvars.ErrTokenUsed))
		return nil
	})
	// Output:
	// t2 old value: 1 true
	// t1 had an old value: false
	// after reset t2: 1
	// set after reset t1: false
	// true
}

// This example demonstrates Go: the new goroutine starts in a copy of the
// caller's context.
func ExampleGo() {
	_ = contextvars.New().Run(func() error {
		requestID := contextvars.NewVarWithDefault("request_id", "-")
		requestID.Set("req-42")

		var wg sync.WaitGroup
		wg.Add(1)
		contextvars.Go(func() {
			defer wg.Done()
			id, _ := requestID.Get()
			fmt.Println("in Go:", id)
		})
		wg.Wait() // one at a time, for a stable output order
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, _ := requestID.Get()
			fmt.Println("in a plain go statement:", id)
		}()
		wg.Wait()
		return nil
	})
	// Output:
	// in Go: req-42
	// in a plain go statement: -
}

// This example demonstrates the error for entering a context that is already
// entered, Python's RuntimeError.
func ExampleContext_Run_recursive() {
	c := contextvars.New()
	_ = c.Run(func() error {
		err := c.Run(func() error { return nil })
		fmt.Println(err)
		fmt.Println(errors.Is(err, contextvars.ErrAlreadyEntered))
		return nil
	})
	// Output:
	// contextvars: cannot enter context: <Context 0 vars> is already entered
	// true
}

// This example demonstrates Call, Run for a function with a result.
func ExampleCall() {
	c := contextvars.New()
	user := contextvars.NewVar[string]("user")
	greeting, err := contextvars.Call(c, func() (string, error) {
		user.Set("ada")
		u, _ := user.Get()
		return "hello, " + u, nil
	})
	fmt.Println(greeting, err)
	u, _ := user.In(c)
	fmt.Println(u)
	// Output:
	// hello, ada <nil>
	// ada
}

// This example demonstrates iterating over a context.
func ExampleContext_All() {
	c := contextvars.New()
	a := contextvars.NewVar[int]("a")
	b := contextvars.NewVar[string]("b")
	_ = c.Run(func() error {
		a.Set(1)
		b.Set("two")
		return nil
	})
	for k, v := range c.All() {
		fmt.Println(k.Name(), v)
	}
	fmt.Println(c)
	// Unordered output:
	// a 1
	// b two
	// <Context 2 vars>
}

// This example demonstrates handing the caller's vars to goroutines that
// errgroup starts: each wrapped func runs in a copy of the context current
// when WrapErr was called.
func ExampleWrapErr() {
	tenant := contextvars.NewVar[string]("tenant")
	_ = contextvars.New().Run(func() error {
		tenant.Set("acme")
		var g errgroup.Group
		results := make([]string, 3)
		for i := range results {
			g.Go(contextvars.WrapErr(func() error {
				t, _ := tenant.Get()
				results[i] = fmt.Sprintf("shard %d for %s", i, t)
				return nil
			}))
		}
		if err := g.Wait(); err != nil {
			return err
		}
		for _, r := range results {
			fmt.Println(r)
		}
		return nil
	})
	// Output:
	// shard 0 for acme
	// shard 1 for acme
	// shard 2 for acme
}

// This example demonstrates running a callback that receives only a
// context.Context in a copy of the vars of the request that made it.
func ExampleRunFrom() {
	user := contextvars.NewVar[string]("user")
	req := contextvars.New()
	_ = req.Run(func() error {
		user.Set("alice")
		ctx := contextvars.WithContext(context.Background(), req)
		done := make(chan struct{})
		go func() { // say, a database driver's hook
			defer close(done)
			_ = contextvars.RunFrom(ctx, func() error {
				u, _ := user.Get()
				fmt.Println("hook runs for", u)
				return nil
			})
		}()
		<-done
		return nil
	})
	// Output:
	// hook runs for alice
}

// This example demonstrates Var.InContext, the typed LookupContext: code
// that may run in a context of its own or in none (a log helper, a plain
// goroutine) reads a var from the context it runs in, else from the one
// its context.Context carries.
func ExampleVar_InContext() {
	user := contextvars.NewVar[string]("user")
	req := contextvars.New()
	_ = req.Run(func() error {
		user.Set("alice")
		ctx := contextvars.WithContext(context.Background(), req)
		done := make(chan struct{})
		go func() { // a plain goroutine: it runs in no context
			defer close(done)
			u, ok := user.InContext(ctx)
			fmt.Println("plain goroutine:", u, ok)
		}()
		<-done
		done = make(chan struct{})
		contextvars.Go(func() { // its own copy, where it sets a var
			defer close(done)
			user.Set("bob")
			u, _ := user.InContext(ctx)
			fmt.Println("in its own context:", u)
		})
		<-done
		return nil
	})
	// Output:
	// plain goroutine: alice true
	// in its own context: bob
}

// This example demonstrates Pull: iter.Pull runs a sequence on a goroutine
// of its own, which would start with an empty context; Pull runs it in a
// copy of the caller's.
func ExamplePull() {
	unit := contextvars.NewVarWithDefault("unit", "m")
	lengths := func(yield func(string) bool) {
		for _, n := range []int{3, 5} {
			u, _ := unit.Get()
			if !yield(fmt.Sprint(n, u)) {
				return
			}
		}
	}
	_ = contextvars.New().Run(func() error {
		unit.Set("km")
		next, stop := contextvars.Pull(iter.Seq[string](lengths))
		defer stop()
		for s, ok := next(); ok; s, ok = next() {
			fmt.Println(s)
		}
		return nil
	})
	// Output:
	// 3km
	// 5km
}
