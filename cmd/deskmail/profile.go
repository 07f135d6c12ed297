package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
)

// startCPUProfile writes a CPU profile of the whole process to the file
// $DESKMAIL_CPUPROFILE names ("%p" in it becomes the process id, so
// that one process per mail writes one profile each; go tool pprof
// merges several), for the benchmarks that run the built binary. It
// returns the function that ends the profile; without the variable it
// does nothing.
func startCPUProfile() func() {
	path := os.Getenv("DESKMAIL_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	path = strings.ReplaceAll(path, "%p", strconv.Itoa(os.Getpid()))
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "deskmail: DESKMAIL_CPUPROFILE: %v\n", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintf(os.Stderr, "deskmail: DESKMAIL_CPUPROFILE: %v\n", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
