//go:build !race && !purego

package contextvars

// storeRelease stores v at p with a plain MOV (word_amd64.s): a release
// store under x86-TSO; see word.go.
//
//go:noescape
func storeRelease(p *uint64, v uint64)
