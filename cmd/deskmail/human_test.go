package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestHumanOutput reads the built binary's human output after a mail
// and an admin change: priorities and statuses are named, history
// entries are sentences without stutter, backup says where it wrote and
// how much; and ingest of many files and backup print nothing on
// stderr when it is not a terminal (no progress line in scripts).
func TestHumanOutput(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	files, err := filepath.Glob(filepath.Join("..", "..", "fixtures", "threading", "basic", "*.eml"))
	if err != nil || len(files) < 3 {
		t.Fatalf("fixtures: %v %v", files, err)
	}
	for i, f := range files {
		if files[i], err = filepath.Abs(f); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) (string, string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("deskmail %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return stdout.String(), stderr.String()
	}
	if _, errOut := run(append([]string{"ingest", "--db", "d.db"}, files...)...); errOut != "" {
		t.Errorf("ingest wrote to a stderr that is not a terminal: %q", errOut)
	}
	out, _ := run("tickets", "update", "1", "--db", "d.db", "--status", "4", "--priority", "3")
	if strings.TrimSpace(out) != "ticket #1: status 4 (Resolved), priority 3 (high)" {
		t.Errorf("tickets update said %q", out)
	}
	list, _ := run("tickets", "list", "--db", "d.db")
	if !regexp.MustCompile(`(?m)^1 +Resolved +high +`).MatchString(list) {
		t.Errorf("tickets list does not name status and priority:\n%s", list)
	}
	show, _ := run("tickets", "show", "1", "--db", "d.db")
	for _, want := range []string{
		"Status: 4 (Resolved)  Priority: 3 (high)  Requester: Jane Doe <jane.doe@customer.example>",
		": incoming reply from jane.doe@customer.example\n",
		"  jane.doe@customer.example: ticket created from mail\n",
		"  deskmail tickets update changed the status from 2 (Open) to 4 (Resolved)\n",
		"  deskmail tickets update changed the priority from 1 (low) to 3 (high)\n",
	} {
		if !strings.Contains(show, want) {
			t.Errorf("tickets show lacks %q:\n%s", want, show)
		}
	}
	// No stutter: no word said twice within three words, no raw
	// action codes.
	hist := show[strings.Index(show, "History:"):]
	for _, l := range strings.Split(hist, "\n")[1:] {
		w := strings.Fields(l)
		for i := 2; i < len(w); i++ {
			for j := max(2, i-2); j < i; j++ {
				if strings.EqualFold(w[i], w[j]) && len(w[i]) > 3 {
					t.Errorf("history line stutters (%q twice): %s", w[i], l)
				}
			}
		}
		if strings.Contains(l, "_") {
			t.Errorf("history line shows a raw code: %s", l)
		}
	}
	out, errOut := run("backup", "--db", "d.db", "copy.db")
	fi, err := os.Stat(filepath.Join(dir, "copy.db"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "backup written to copy.db ("+byteSize(fi.Size())+", in ") || errOut != "" {
		t.Errorf("backup said %q (stderr %q); the copy has %d bytes", out, errOut, fi.Size())
	}
}

// TestProgressLine checks what a terminal shows for a long ingest: the
// count, the total, the share done, the rate and the time left, at most five times a
// second, and a cleared line at the end.
func TestProgressLine(t *testing.T) {
	var b bytes.Buffer
	now := time.Unix(1000, 0)
	p := &progress{w: &b, on: true, what: "messages", total: 400, now: func() time.Time { return now }}
	p.start = now
	now = now.Add(time.Second)
	p.add(100)
	now = now.Add(100 * time.Millisecond)
	p.add(100) // too soon: not shown
	now = now.Add(900 * time.Millisecond)
	p.add(100)
	p.done()
	want := "\r\033[K100 of 400 messages (25%), 100/s, 3s left" + "\r\033[K300 of 400 messages (75%), 150/s, 1s left" + "\r\033[K"
	if b.String() != want {
		t.Errorf("progress wrote %q, want %q", b.String(), want)
	}
	var quiet bytes.Buffer
	q := newProgress(&quiet, "messages", 10)
	q.add(10)
	q.done()
	if quiet.Len() != 0 {
		t.Errorf("progress on a non-terminal wrote %q", quiet.String())
	}
}
