package oneshot

import (
	"runtime"
	"syscall"
	"unsafe"
)

// madvCollapse is Linux's MADV_COLLAPSE (6.1 and later), which the
// syscall package does not name.
const madvCollapse = 25

// heapPage is one transparent huge page, and heapArena the span of
// address space the Go runtime reserves for its heap at a time
// (heapArenaBytes on linux/amd64 and arm64), both aligned to their size.
const (
	heapPage  = 2 << 20
	heapArena = 64 << 20
)

// hugeHeap backs the Go heap with transparent huge pages: the 2 MiB
// the heap has started in (MADV_COLLAPSE: one huge page now, holding
// what the init functions before this one wrote) and the rest of the
// mapped heap (MADV_HUGEPAGE: a huge page at its first touch).
//
// A `deskmail ingest -` process never collects garbage (it ends
// before the first cycle), so every object it allocates lands on
// memory it touches for the first time: with 4 KiB pages a page fault
// for every 4 KiB allocated, some 200 faults of ~12 µs each on a
// Firecracker VM. With huge pages, the first 2 MiB cost the
// collapse, each further 2 MiB one fault. The cost is memory: each
// 2 MiB the heap touches is resident whole, some 6.5 MiB more peak
// RSS per process for one mail (22.8 -> 29.4 MB), for its ~40 ms.
//
// Advice only: on a kernel without MADV_COLLAPSE, with transparent
// huge pages set to never, or where the heap is not where the address
// of a new object says it is, the calls fail and nothing changes. The
// heap the runtime maps later (past the first chunk) is not advised;
// the runtime maps it over what it reserved, which drops advice.
func hugeHeap() {
	p := uintptr(unsafe.Pointer(new([64]byte)))
	base := p &^ (heapPage - 1)
	rest := heapArena - base&(heapArena-1)
	syscall.Syscall(syscall.SYS_MADVISE, base, rest, syscall.MADV_HUGEPAGE)
	syscall.Syscall(syscall.SYS_MADVISE, base, heapPage, madvCollapse)
}

// HugeHeapAhead has the runtime map n bytes more of Go heap at once,
// advises them as transparent huge pages (MADV_HUGEPAGE), and frees
// them again (a blocking collection), so that the heap a long batch
// grows into afterwards (the runtime reuses the lowest free addresses
// first) takes one page fault per 2 MiB instead of one per 4 KiB.
//
// The runtime maps its heap 4 MiB at a time as it grows, each time
// over address space it had reserved, which drops any advice given
// before (see hugeHeap); an allocation of n bytes makes it map n at
// once. Nothing touches the n bytes (fresh memory is known zero), so
// they cost no resident memory until the heap reuses them. A batch
// ingest of 5,000 gen-mails into 100,000 tickets took ~17,000 faults in
// the Go heap, some 12 µs each on a Firecracker VM; with 128 MiB ahead,
// ~100.
//
// The collection at the end is what keeps the heap goal small: had a
// cycle started while the n bytes were live, they would survive it and
// set the next goal to GOGC times n.
//
// Advice only, as hugeHeap: where the kernel refuses or has huge pages
// off, nothing changes but the one collection.
func HugeHeapAhead(n int) {
	b := make([]byte, n)
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	start := (p + heapPage - 1) &^ (heapPage - 1)
	end := (p + uintptr(n)) &^ (heapPage - 1)
	if end > start {
		syscall.Syscall(syscall.SYS_MADVISE, start, end-start, syscall.MADV_HUGEPAGE)
	}
	runtime.KeepAlive(b)
	b = nil
	runtime.GC()
}
