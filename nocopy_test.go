package contextvars_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestNoCopy_vet checks that go vet reports a Token, a Var or a Context
// copied by value: a copied Token could undo its Set twice.
func TestNoCopy_vet(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command("go", "vet", "./testdata/vetcopy").CombinedOutput()
	assert.Error(t, err, "go vet must fail on testdata/vetcopy")
	report := string(out)
	t.Log(report)
	for _, want := range []string{
		"assignment copies lock value to dup: github.com/go-contextvars/contextvars.Token[int]",
		"assignment copies lock value to w: github.com/go-contextvars/contextvars.Var[int]",
		"github.com/go-contextvars/contextvars.Context contains github.com/go-contextvars/contextvars.noCopy",
	} {
		assert.True(t, strings.Contains(report, want), "go vet reports %q", want)
	}
}
