package main

import "strings"

// hugeMallocTunable is the glibc tunable (GLIBC_TUNABLES) that backs
// malloc's heap with transparent huge pages.
const hugeMallocTunable = "glibc.malloc.hugetlb"

// hugeMallocMark is set in the environment of the program run again by
// execWithHugeMalloc, which runs it again only when it is absent (and
// then removes it). The tunables cannot tell: glibc 2.36 parses
// GLIBC_TUNABLES in place, writing a NUL over each colon, so the
// program run again sees only the first of several tunables.
const hugeMallocMark = "DESKMAIL_HUGE_MALLOC"

// withHugeMalloc returns env (KEY=VALUE entries, as os.Environ gives
// them) for the program run again with hugeMallocTunable=1, and
// whether to run it again: not when env has hugeMallocMark (it has
// been) or already names the tunable (the user's choice). The tunable
// goes first in GLIBC_TUNABLES: glibc applies them in order, so one the
// user set after it, which the first process may not see (above),
// still wins.
func withHugeMalloc(env []string) ([]string, bool) {
	const key = "GLIBC_TUNABLES="
	out := make([]string, 0, len(env)+2)
	found := false
	for _, kv := range env {
		if strings.HasPrefix(kv, hugeMallocMark+"=") {
			return env, false
		}
		if !strings.HasPrefix(kv, key) || found {
			out = append(out, kv) // getenv and glibc read the first
			continue
		}
		found = true
		v := kv[len(key):]
		for _, t := range strings.Split(v, ":") {
			if name, _, _ := strings.Cut(t, "="); name == hugeMallocTunable {
				return env, false
			}
		}
		t := hugeMallocTunable + "=1"
		if v != "" {
			t += ":" + v
		}
		out = append(out, key+t)
	}
	if !found {
		out = append(out, key+hugeMallocTunable+"=1")
	}
	return append(out, hugeMallocMark+"=1"), true
}
