package contextvars

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any test leaves a goroutine behind: the package
// starts none of its own, and every test must wait for those it starts.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
