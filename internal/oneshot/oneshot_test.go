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

// mapping is one mapping of /proc/self/smaps: its address range and
// whether its VmFlags advise huge pages ("hg").
type mapping struct {
	lo, hi uint64
	huge   bool
}

// mappings reads /proc/self/smaps, skipping the tests on a kernel
// without transparent huge pages.
func mappings(t *testing.T) []mapping {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("Linux only")
	}
	if b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled"); err != nil || strings.Contains(string(b), "[never]") {
		t.Skip("no transparent huge pages")
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err) // Linux has /proc/self/smaps
	}
	var ms []mapping
	for _, l := range strings.Split(string(smaps), "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			lo, hi, _ := strings.Cut(f[0], "-")
			a, err1 := strconv.ParseUint(lo, 16, 64)
			b, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 != nil || err2 != nil {
				t.Fatalf("smaps line %q", l)
			}
			ms = append(ms, mapping{lo: a, hi: b})
			continue
		}
		if strings.HasPrefix(l, "VmFlags:") && len(ms) > 0 {
			ms[len(ms)-1].huge = strings.Contains(l, " hg")
		}
	}
	return ms
}

// TestHugeHeap checks that hugeHeap leaves the heap's mapping advised
// for huge pages where the kernel has transparent huge pages at all.
func TestHugeHeap(t *testing.T) {
	hugeHeap()
	ms := mappings(t)
	addr := uint64(uintptr(unsafe.Pointer(new([64]byte))))
	for _, m := range ms {
		if m.lo <= addr && addr < m.hi {
			if !m.huge {
				t.Errorf("heap mapping at %#x not advised for huge pages", addr)
			}
			return
		}
	}
	t.Errorf("no mapping holds the heap address %#x", addr)
}

// TestHugeHeapAhead checks that HugeHeapAhead leaves at least the n
// bytes it mapped advised for huge pages, and the heap goal small (had
// the n bytes survived a cycle, the goal would be GOGC times n).
func TestHugeHeapAhead(t *testing.T) {
	mappings(t) // skips where there are no huge pages
	const n = 64 << 20
	HugeHeapAhead(n)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if ms.NextGC >= n {
		t.Errorf("heap goal %d bytes after HugeHeapAhead(%d): the bytes ahead survived a collection", ms.NextGC, n)
	}
	var advised uint64
	for _, m := range mappings(t) {
		if m.huge {
			advised += m.hi - m.lo
		}
	}
	if advised < n-2*heapPage {
		t.Errorf("%d bytes advised for huge pages after HugeHeapAhead(%d)", advised, n)
	}
}
