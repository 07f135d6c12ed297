// Package testtool decides what a test does when an outside program it
// talks to (swaks, python3 with requests, …) is not installed: on a
// developer's machine the test is skipped with the package to install;
// with DESKMAIL_REQUIRE_TOOLS=1, which .ci/run sets after installing
// every such program, it fails, so that CI can never pass by skipping.
package testtool

import (
	"os"
	"testing"
)

// Missing ends the test because a program it needs is absent: why names
// the program and how to install it.
func Missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("DESKMAIL_REQUIRE_TOOLS") == "1" {
		t.Fatalf("DESKMAIL_REQUIRE_TOOLS=1 but %s", why)
	}
	t.Skip(why)
}
