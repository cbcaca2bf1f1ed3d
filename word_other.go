//go:build !amd64 || race || purego

package contextvars

import "sync/atomic"

// storeRelease stores v at p: sync/atomic's store, which is at least a
// release, where there is no plain-store version (see word.go); under the
// race detector, so that it sees the synchronization.
func storeRelease(p *uint64, v uint64) { atomic.StoreUint64(p, v) }
