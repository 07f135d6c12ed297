package oneshot

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

func TestIngest(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"deskmail", "ingest", "--config", "f", "-"}, true},
		{[]string{"/usr/bin/deskmail", "ingest"}, true},
		{[]string{"deskmail", "import", "a.mbox"}, false},
		{[]string{"deskmail", "serve"}, false},
		{[]string{"deskmail"}, false},
		{[]string{"deskmail.test", "-test.run=X"}, false},
	} {
		if got := Ingest(c.args); got != c.want {
			t.Errorf("Ingest(%q) = %v, want %v", c.args, got, c.want)
		}
	}
}

// TestHugeHeap checks that hugeHeap leaves the heap's mapping advised
// for huge pages (VmFlags "hg" in /proc/self/smaps) where the kernel
// has transparent huge pages at all.
func TestHugeHeap(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Linux only")
	}
	if b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled"); err != nil || strings.Contains(string(b), "[never]") {
		t.Skip("no transparent huge pages")
	}
	hugeHeap()
	p := new([64]byte)
	addr := uint64(uintptr(unsafe.Pointer(p)))
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err) // Linux has /proc/self/smaps
	}
	in := false
	for _, l := range strings.Split(string(smaps), "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			lo, hi, _ := strings.Cut(f[0], "-")
			a, err1 := strconv.ParseUint(lo, 16, 64)
			b, err2 := strconv.ParseUint(hi, 16, 64)
			in = err1 == nil && err2 == nil && a <= addr && addr < b
			continue
		}
		if in && strings.HasPrefix(l, "VmFlags:") {
			if !strings.Contains(l, " hg") {
				t.Errorf("heap mapping at %#x not advised for huge pages: %s", addr, l)
			}
			return
		}
	}
	t.Errorf("no mapping holds the heap address %#x", addr)
}
