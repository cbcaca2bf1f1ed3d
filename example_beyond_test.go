package contextvars_test

import (
	"fmt"

	"github.com/go-contextvars/contextvars"
)

// This example binds two vars for the length of one call, as Java's
// ScopedValue.where(a, x).where(b, y).run(op) does.
func ExampleRunWith() {
	requestID := contextvars.NewVar[string]("request.id")
	tenant := contextvars.NewVarWithDefault("tenant", "none")
	_ = contextvars.RunWith(func() error {
		id, _ := requestID.Get()
		t, _ := tenant.Get()
		fmt.Println("inside:", id, t)
		return nil
	}, contextvars.Bind(requestID, "r-42"), contextvars.Bind(tenant, "acme"))
	t, _ := tenant.Get()
	fmt.Println("after:", t)
	// Output:
	// inside: r-42 acme
	// after: none
}

// This example starts a child goroutine in a given context, as Python
// 3.14's threading.Thread(context=ctx) does: the child's Sets are seen in
// that context afterwards.
func ExampleGoIn() {
	hits := contextvars.NewVar[int]("hits")
	c := contextvars.New()
	done := make(chan struct{})
	if err := contextvars.GoIn(c, func() {
		defer close(done)
		hits.Set(1)
	}); err != nil {
		fmt.Println(err)
		return
	}
	<-done
	n, _ := hits.In(c) // reads of a context are safe while it is entered

	fmt.Println("hits in c:", n)
	// Output: hits in c: 1
}

// This example gives each child started with Go a value derived from its
// parent's: the depth of fan-out, as a child span would be.
func ExampleVar_InheritWith() {
	depth := contextvars.NewVar[int]("depth").InheritWith(func(d int) int { return d + 1 })
	_ = contextvars.New().Run(func() error {
		depth.Set(0)
		done := make(chan struct{})
		contextvars.Go(func() {
			defer close(done)
			d, _ := depth.Get()
			fmt.Println("child depth:", d)
		})
		<-done
		d, _ := depth.Get()
		fmt.Println("parent depth:", d)
		return nil
	})
	// Output:
	// child depth: 1
	// parent depth: 0
}

// This example counts context switches with a switch hook, as a tracer or
// profiler would hook them.
func ExampleOnSwitch() {
	switches := 0
	remove := contextvars.OnSwitch(func(from, to *contextvars.Context) { switches++ })
	_ = contextvars.New().Run(func() error { return nil }) // enter and leave
	remove()
	_ = contextvars.New().Run(func() error { return nil }) // not counted
	fmt.Println("switches:", switches)
	// Output: switches: 2
}
