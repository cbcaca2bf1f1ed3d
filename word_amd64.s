//go:build !race && !purego

#include "textflag.h"

// func storeRelease(p *uint64, v uint64)
//
// A plain store: x86-TSO keeps it behind the caller's earlier loads and
// stores, and the call keeps the compiler from moving them past it.
TEXT ·storeRelease(SB), NOSPLIT|NOFRAME, $0-16
	MOVQ	p+0(FP), AX
	MOVQ	v+8(FP), BX
	MOVQ	BX, 0(AX)
	RET
