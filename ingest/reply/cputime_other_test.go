//go:build !linux

package reply

import "time"

// threadCPU returns f's wall time: the CPU time of one thread is read
// on Linux only (cputime_linux_test.go).
func threadCPU(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}
