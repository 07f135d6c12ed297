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

import (
	"fmt"
	"os"
	"syscall"
)

// tuneMalloc keeps SQLite's large, short-lived copies of mail (the
// bound blob and the record built from it, each as big as the raw
// message) from staying in the process's resident memory after they
// are freed: glibc serves blocks of 256 KiB and more with mmap, and
// unmaps them on free, instead of keeping them in its heap. Without
// it, 16 concurrent 20 MB mails left the RSS hundreds of MB above what
// the Go heap held.
func tuneMalloc() { C.deskmailTuneMalloc() }

// execWithHugeMalloc runs the program again in this process (execve:
// same pid, arguments, descriptors and working directory) with glibc's
// heap backed by transparent huge pages, the tunable
// glibc.malloc.hugetlb=1 added to GLIBC_TUNABLES (see withHugeMalloc),
// once: the program run again finds hugeMallocMark, removes it and
// goes on. glibc reads its tunables only when a program starts, so
// there is no other way for a program to choose one for itself.
//
// It is for a batch ingest: SQLite's page cache (32 MB, see store) and
// its other buffers are malloc'd, and with 4 KiB pages each of those
// pages costs a page fault the first time it is touched — some 7,000
// faults of a 5,000-mail batch, ~12 µs each on a Firecracker VM. With
// huge pages glibc grows its heap 2 MiB-aligned and advises it
// (MADV_HUGEPAGE), one fault per 2 MiB. A glibc older than 2.35
// ignores the tunable; the start costs one more program start (a few
// milliseconds), which is why only a batch asks for it.
//
// It returns only when the program cannot be run again (the
// executable was replaced or removed since it started, say): the
// caller then goes on as it is.
func execWithHugeMalloc() error {
	env, ok := withHugeMalloc(os.Environ())
	if !ok {
		os.Unsetenv(hugeMallocMark) // not for what this process runs
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("huge pages for malloc: %w", err)
	}
	if err := syscall.Exec(exe, os.Args, env); err != nil {
		return fmt.Errorf("huge pages for malloc: exec %s: %w", exe, err)
	}
	return nil
}
