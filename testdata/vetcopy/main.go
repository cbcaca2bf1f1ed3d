// Command vetcopy copies a Token, a Var and a Context by value: go vet must
// report each copy (TestNoCopy_vet runs it). It is never built otherwise.
package main

import "github.com/go-contextvars/contextvars"

func main() {
	v := contextvars.NewVar[int]("v")
	tok := v.Set(1)
	dup := *tok // a second token for one Set
	_ = tok.Reset()
	v.Set(3)
	_ = dup.Reset()

	w := *v                 // a copy of a var
	c := *contextvars.New() // a copy of a context
	_, _ = w, c
}
