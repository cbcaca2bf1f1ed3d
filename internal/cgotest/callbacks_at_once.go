//go:build cgo

package cgotest

/*
#include <pthread.h>

extern void goReviewCallback(int);

static void *reviewCallOnce(void *arg) {
	for (int j = 0; j < 50; j++) goReviewCallback((int)(long)arg);
	return 0;
}

// reviewThreadsAtOnce starts n C threads at once, each of which calls into
// Go 50 times, and waits for them.
static void reviewThreadsAtOnce(int n) {
	pthread_t t[64];
	if (n > 64) n = 64;
	for (int i = 0; i < n; i++) pthread_create(&t[i], 0, reviewCallOnce, (void *)(long)i);
	for (int i = 0; i < n; i++) pthread_join(t[i], 0);
}
*/
import "C"

var reviewCallback func(i int)

//export goReviewCallback
func goReviewCallback(i C.int) { reviewCallback(int(i)) }

// ReviewThreadsAtOnce runs fn as the callback of n C threads running at
// once, each calling 50 times.
func ReviewThreadsAtOnce(n int, fn func(i int)) {
	reviewCallback = fn
	C.reviewThreadsAtOnce(C.int(n))
}
