package contextvars

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
