package reply

import (
	"runtime"
	"syscall"
	"time"
)

// threadCPU runs f on one locked OS thread and returns the CPU time
// that thread spent in it (RUSAGE_THREAD), or the wall time where the
// kernel does not say. CPU time leaves out the time spent waiting for
// a core, which on a loaded machine swamps a wall-clock measure.
func threadCPU(f func()) time.Duration {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var a, b syscall.Rusage
	start := time.Now()
	if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &a); err != nil {
		f()
		return time.Since(start)
	}
	f()
	if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &b); err != nil {
		return time.Since(start)
	}
	return time.Duration(b.Utime.Nano() - a.Utime.Nano() + b.Stime.Nano() - a.Stime.Nano())
}
