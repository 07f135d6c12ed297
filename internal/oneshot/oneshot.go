// Package oneshot tunes the process for `deskmail ingest` while the
// program starts, before the packages that follow it in the
// initialization order run their init functions (it imports nothing
// but the standard library's os, runtime, syscall and unsafe, and
// cmd/deskmail imports it for that side effect alone).
//
// An MTA's pipe transport runs one `deskmail ingest -` per mail,
// several at a time, and each process lives some 15 ms. There:
//   - a second P only makes the scheduler start, wake and park threads
//     (for every goroutine the runtime and the init functions start,
//     around every cgo call into SQLite): about 2–3 ms of CPU per
//     process when the runtime starts with GOMAXPROCS=2, most of it
//     before main runs. So ingest starts on one P; runIngest gives a
//     batch of files the default back (runtime.SetDefaultGOMAXPROCS),
//     and a GOMAXPROCS in the environment always wins.
//   - main stays on the process's first thread (LockOSThread from an
//     init function), so SQLite, which main's goroutine drives, runs
//     there and glibc serves its memory from the main arena, grown by
//     brk 128 KiB at a time. On other threads glibc gives each thread
//     an arena of its own and grows it one page at a time, an mprotect
//     call each: some 20 system calls of each such process.
//   - the Go heap is backed by transparent huge pages (see hugeHeap):
//     such a process never collects garbage, so each 4 KiB it
//     allocates is a fresh page and, with small pages, a page fault.
package oneshot

import (
	"os"
	"runtime"
)

func init() {
	if !Ingest(os.Args) {
		return
	}
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	runtime.LockOSThread()
	hugeHeap()
}

// Ingest reports whether args (os.Args) run `deskmail ingest`.
func Ingest(args []string) bool {
	return len(args) > 1 && args[1] == "ingest"
}
