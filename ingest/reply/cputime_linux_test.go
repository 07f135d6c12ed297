package reply

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU runs f on one locked OS thread and returns the CPU time
// that thread spent in it (CLOCK_THREAD_CPUTIME_ID), or the wall time
// where the kernel does not say. CPU time leaves out the time spent
// waiting for a core, which on a loaded machine swamps a wall-clock
// measure. getrusage(RUSAGE_THREAD) is no substitute: on a kernel that
// accounts CPU time by ticks it reports 0 for a 128 KiB run and whole
// ticks for a longer one (seen on a Firecracker VM, 6.18).
func threadCPU(f func()) time.Duration {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := time.Now()
	var a, b unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &a); err != nil {
		f()
		return time.Since(start)
	}
	f()
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &b); err != nil {
		return time.Since(start)
	}
	return time.Duration(b.Nano() - a.Nano())
}
