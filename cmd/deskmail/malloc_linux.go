//go:build linux && cgo

package main

/*
#include <malloc.h>

// deskmailTuneMalloc makes glibc return large blocks to the system when
// they are freed: a fixed mmap threshold (which also turns off glibc's
// raising it after each large free) and two arenas.
static void deskmailTuneMalloc(void) {
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);
	mallopt(M_ARENA_MAX, 2);
}
*/
import "C"

// tuneMalloc keeps SQLite's large, short-lived copies of mail (the
// bound blob and the record built from it, each as big as the raw
// message) from staying in the process's resident memory after they
// are freed: glibc serves blocks of 256 KiB and more with mmap, and
// unmaps them on free, instead of keeping them in its heap. Without
// it, 16 concurrent 20 MB mails left the RSS hundreds of MB above what
// the Go heap held.
func tuneMalloc() { C.deskmailTuneMalloc() }
