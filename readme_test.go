package contextvars_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestREADME_citesTestsThatExist: every test, fuzz test, benchmark and
// example the README names (in backquotes, as its Guarantees table cites
// them) is a func in some _test.go file of the repository, nested modules
// included, so that a test deleted or renamed does not leave a guarantee
// that nothing checks.
func TestREADME_citesTestsThatExist(t *testing.T) {
	// The nested modules hold tests the README cites, and a module's zip
	// (the module cache, go test all) leaves them out.
	for _, m := range []string{"grpcvars", "integration", "bench/peers"} {
		if _, err := os.Stat(filepath.Join(m, "go.mod")); err != nil {
			t.Skipf("not a whole checkout of the repository (no %s/go.mod)", m)
		}
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	funcs := map[string]bool{}
	decl := regexp.MustCompile(`(?m)^func ((?:Test|Fuzz|Benchmark|Example)\w*)\(`)
	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != "." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllSubmatch(src, -1) {
			funcs[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cited := regexp.MustCompile("`((?:Test|Fuzz|Benchmark|Example)[A-Z_]\\w*)")
	n := 0
	for _, m := range cited.FindAllSubmatch(readme, -1) {
		n++
		if name := string(m[1]); !funcs[name] {
			t.Errorf("README.md cites %s, which no _test.go file declares", name)
		}
	}
	if n < 50 {
		t.Errorf("found only %d citations of tests in README.md: has its format changed?", n)
	}
}
