//go:build !linux || !cgo

package main

// tuneMalloc does nothing where the C library is not glibc.
func tuneMalloc() {}

// execWithHugeMalloc does nothing where the C library is not glibc.
func execWithHugeMalloc() error { return nil }
