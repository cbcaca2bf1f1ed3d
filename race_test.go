//go:build race

package contextvars

// raceEnabled reports that the race detector is on: tests that need more
// live goroutines than it allows skip.
const raceEnabled = true
