package contextvars_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCore_dependencies checks that a program using the core package alone
// compiles only it, goid and the standard library: the subpackages'
// ecosystems (OpenTelemetry for baggagevars) stay theirs.
func TestCore_dependencies(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	require.NoError(t, err, "go list -deps")
	deps := strings.Fields(string(out))
	slices.Sort(deps)
	assert.Equal(t, []string{"github.com/go-contextvars/contextvars", "github.com/petermattis/goid"}, deps)
}
