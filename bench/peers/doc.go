// Package peers benchmarks contextvars beside the goroutine-local libraries
// a Go program might use instead (github.com/timandy/routine,
// github.com/jtolds/gls) and beside context.Context values. It is a module of
// its own, so that neither peer ever enters contextvars' requirements; see
// peers_test.go and the README's "Compared with goroutine-local libraries".
package peers
