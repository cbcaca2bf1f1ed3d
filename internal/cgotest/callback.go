//go:build cgo

package cgotest

/*
#include <pthread.h>

extern void goCallback(int);

static void *callOnce(void *arg) {
	goCallback((int)(long)arg);
	return 0;
}

// threadsOneAfterAnother starts n C threads, one after another, each of
// which calls into Go once and exits: the runtime runs them all on one
// pooled goroutine.
static void threadsOneAfterAnother(int n) {
	for (int i = 0; i < n; i++) {
		pthread_t t;
		pthread_create(&t, 0, callOnce, (void *)(long)i);
		pthread_join(t, 0);
	}
}

// callHere calls into Go on the calling thread, from C code that a Go
// goroutine called.
static void callHere(int i) { goCallback(i); }
*/
import "C"

// callback is what goCallback runs; tests set it.
var callback func(i int)

//export goCallback
func goCallback(i C.int) { callback(int(i)) }

// ThreadsOneAfterAnother runs fn as the callback of n C threads started one
// after another.
func ThreadsOneAfterAnother(n int, fn func(i int)) {
	callback = fn
	C.threadsOneAfterAnother(C.int(n))
}

// CallHere runs fn as a callback from C code called by the calling
// goroutine.
func CallHere(i int, fn func(i int)) {
	callback = fn
	C.callHere(C.int(i))
}
