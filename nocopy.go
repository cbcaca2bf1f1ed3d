package contextvars

// This file holds noCopy, which makes go vet report copies of the package's
// types by value; TestNoCopy_vet checks that it does.

// noCopy makes go vet's copylocks check report a Context, Var or Token
// copied by value (as sync's types do): a copy of a Token could undo its Set
// twice, a copy of a Context would share its ownership flag with nothing. It
// is the first field of each, where a zero-size field takes no room.
type noCopy struct{}

// Lock and Unlock are what copylocks looks for; they do nothing.
func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
