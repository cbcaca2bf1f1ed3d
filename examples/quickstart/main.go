// Command quickstart runs the Context.run example of Python's contextvars
// documentation with github.com/go-contextvars/contextvars, then shows a
// scoped Set, a goroutine started with Go and the already-entered error.
package main

import (
	"fmt"
	"sync"

	"github.com/go-contextvars/contextvars"
)

// v is Python's `var = ContextVar('var')`. Vars are made once, at package
// level, as Python's docs advise.
var v = contextvars.NewVar[string]("var")

func main() {
	fmt.Println("# Python docs: Context.run")
	v.Set("spam")
	ctx := contextvars.CopyContext()

	mainFn := func() error {
		// 'var' was set to 'spam' before calling copy_context() and
		// ctx.run(main), so:
		show("var.get()", v.Get)
		show("ctx[var]", func() (string, bool) { return v.In(ctx) })

		v.Set("ham")

		// Now, after setting 'var' to 'ham':
		show("var.get()", v.Get)
		show("ctx[var]", func() (string, bool) { return v.In(ctx) })
		return nil
	}

	// Any changes that mainFn makes to 'var' are contained in ctx.
	if err := ctx.Run(mainFn); err != nil {
		panic(err)
	}
	show("after run: ctx[var]", func() (string, bool) { return v.In(ctx) })
	// Outside of ctx, 'var' is still set to 'spam':
	show("after run: var.get()", v.Get)

	fmt.Println("\n# Scoped set: defer v.Set(x).Reset()")
	func() {
		defer v.Set("eggs").Reset()
		show("inside", v.Get)
	}()
	show("after", v.Get)

	fmt.Println("\n# Go starts a goroutine in a copy of the current context")
	var wg sync.WaitGroup
	wg.Add(1)
	contextvars.Go(func() {
		defer wg.Done()
		show("in the goroutine", v.Get)
	})
	wg.Wait()

	fmt.Println("\n# A context is entered once at a time")
	err := ctx.Run(func() error { return ctx.Run(func() error { return nil }) })
	fmt.Println(err)
}

// show prints a labelled value, or LookupError where Python would raise it.
func show(label string, get func() (string, bool)) {
	if val, ok := get(); ok {
		fmt.Printf("%-22s %q\n", label, val)
		return
	}
	fmt.Printf("%-22s LookupError\n", label)
}
