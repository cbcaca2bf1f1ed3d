// Package cgotest checks what the contextvars package does on the goroutines
// that run callbacks from C threads into Go. It is a package of its own
// because a test file cannot use cgo; it has no tests where cgo is off.
package cgotest
