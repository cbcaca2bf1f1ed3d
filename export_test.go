package contextvars

import "unsafe"

// This file exports, for the tests in package contextvars_test, what they
// need to see of the package's inside.

// RegistryEntries returns the number of goroutine states in use and how
// many of them hold implicit contexts.
func RegistryEntries() (all, implicit int) { return registryEntries() }

// RegistryLive, RegistrySweeps, RegistryDropped, SweepNow, HeapInUse, Churn
// and Long are the helpers of the same names in lower case
// (registry_test.go, scale_test.go).
var (
	RegistryLive    = registryLive
	RegistrySweeps  = registrySweeps
	RegistryDropped = registryDropped
	SweepNow        = sweepNow
	HeapInUse       = heapInUse
	Churn           = churn
	Long            = long
)

// DroppedTokenAllocs is what the token of a Set costs where the caller drops
// it or uses it only for a Reset: nothing on 64-bit platforms, where it stays
// on the caller's stack; one allocation on 32-bit ones, where escape analysis
// finds the token leaking in Token.consume (GOARCH=arm go build -gcflags=-m:
// "parameter t leaks to {heap}"; measured under qemu-arm).
var DroppedTokenAllocs = map[bool]float64{true: 0, false: 1}[unsafe.Sizeof(uintptr(0)) == 8]
