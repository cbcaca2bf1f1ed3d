package contextvars

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any test leaves a goroutine behind: the package
// starts none of its own, and every test must wait for those it starts.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// long reports whether the long churn and scale tests run at full size
// (CONTEXTVARS_LONG=1, as .ci/run sets it). Without it, the tests run at a
// size that keeps `go test -race ./...` within a minute on two cores.
func long() bool { return os.Getenv("CONTEXTVARS_LONG") == "1" && !testing.Short() }
