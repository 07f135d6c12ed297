package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// shellBlocks returns the ```sh blocks of the README section whose
// heading is title.
func shellBlocks(t *testing.T, readme, title string) []string {
	t.Helper()
	start := strings.Index(readme, "\n## "+title+"\n")
	if start < 0 {
		t.Fatalf("README has no section %q", title)
	}
	section := readme[start+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(section, -1) {
		blocks = append(blocks, m[1])
	}
	return blocks
}

// freshClone makes a directory that looks like a fresh clone: a
// symbolic link to each tracked top-level entry of the repository.
func freshClone(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("git", "-C", filepath.Join("..", ".."), "ls-files").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		top, _, _ := strings.Cut(f, "/")
		if seen[top] {
			continue
		}
		seen[top] = true
		if err := os.Symlink(filepath.Join(root, top), filepath.Join(dir, top)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestREADMEQuickStart runs the README's quick start as written: the
// shell blocks before the daemon is started, in order, in a fresh
// clone, with bash -e (any failing command fails the test). The daemon
// and swaks steps are what TestNewUser does; the test command is CI.
func TestREADMEQuickStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := shellBlocks(t, string(readme), "Quick start")
	var script []string
	for _, b := range blocks {
		if strings.Contains(b, "deskmail serve") {
			break // from here on the daemon runs: TestNewUser
		}
		script = append(script, b)
	}
	if len(script) < 2 || !strings.Contains(script[0], "go build") {
		t.Fatalf("quick start blocks not found: %q", blocks)
	}
	dir := freshClone(t)
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", strings.Join(script, "\n"))
	cmd.Dir = dir
	// Only what the README exports, not a developer's own secrets.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(e string) bool {
		return strings.HasPrefix(e, "DESKMAIL_") || strings.HasPrefix(e, "IMAP_")
	})
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("README quick start failed: %v\n%s\nscript:\n%s", err, out, strings.Join(script, "\n"))
	}
	for _, want := range []string{`"action":"created"`, "Hello", "deskmail.example.yaml: ok"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("quick start output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "demo-backup.db")); err != nil {
		t.Errorf("backup not written: %v", err)
	}
}

// TestExampleConfigHeader proves the example configuration's first
// lines are exact: with the variables its export line names (and no
// others), check-config passes; with any one of them missing it fails
// naming that variable.
func TestExampleConfigHeader(t *testing.T) {
	bin := buildBinary(t)
	data, err := os.ReadFile(filepath.Join("..", "..", "deskmail.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var vars []string
	for _, l := range strings.Split(string(data), "\n")[:10] {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(strings.TrimPrefix(l, "#")), "export "); ok {
			vars = strings.Fields(rest)
		}
	}
	if len(vars) == 0 {
		t.Fatal("deskmail.example.yaml does not say in its first lines which variables to export")
	}
	example, err := filepath.Abs(filepath.Join("..", "..", "deskmail.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	base := slices.DeleteFunc(os.Environ(), func(e string) bool {
		return strings.HasPrefix(e, "DESKMAIL_") || strings.HasPrefix(e, "IMAP_")
	})
	check := func(env []string) (string, error) {
		cmd := exec.Command(bin, "check-config", example)
		cmd.Env = append(slices.Clone(base), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := check(vars); err != nil {
		t.Fatalf("check-config deskmail.example.yaml with %v: %v\n%s", vars, err, out)
	}
	for i, v := range vars {
		name, _, _ := strings.Cut(v, "=")
		out, err := check(slices.Delete(slices.Clone(vars), i, i+1))
		if err == nil || !strings.Contains(out, "environment variable "+name+" is not set") {
			t.Errorf("without %s: %v\n%s", name, err, out)
		}
	}
}
