//go:build !linux

package oneshot

// hugeHeap does nothing: transparent huge pages are Linux's (see
// hugepage_linux.go).
func hugeHeap() {}

// HugeHeapAhead does nothing but where transparent huge pages exist
// (see hugepage_linux.go).
func HugeHeapAhead(n int) {}
