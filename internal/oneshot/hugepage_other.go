//go:build !linux

package oneshot

// hugeHeap does nothing: transparent huge pages are Linux's (see
// hugepage_linux.go).
func hugeHeap() {}
