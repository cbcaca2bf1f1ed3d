//go:build !race

package contextvars

// raceEnabled reports whether the race detector is on; tests that start
// hundreds of thousands of goroutines do fewer under it.
const raceEnabled = false
