package contextvars

// RegistryEntries returns, for tests in package contextvars_test, the number
// of goroutine states in use and how many of them hold implicit contexts.
func RegistryEntries() (all, implicit int) { return registryEntries() }
