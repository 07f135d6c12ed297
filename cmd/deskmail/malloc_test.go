package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestWithHugeMalloc(t *testing.T) {
	const mark = hugeMallocMark + "=1"
	for _, c := range []struct {
		name    string
		env     []string
		want    []string
		changed bool
	}{
		{"none", []string{"HOME=/root"}, []string{"HOME=/root", "GLIBC_TUNABLES=glibc.malloc.hugetlb=1", mark}, true},
		{"others kept, after ours", []string{"GLIBC_TUNABLES=glibc.malloc.check=0", "A=1"},
			[]string{"GLIBC_TUNABLES=glibc.malloc.hugetlb=1:glibc.malloc.check=0", "A=1", mark}, true},
		{"empty", []string{"GLIBC_TUNABLES="}, []string{"GLIBC_TUNABLES=glibc.malloc.hugetlb=1", mark}, true},
		{"run again already", []string{"GLIBC_TUNABLES=glibc.malloc.hugetlb=1", mark}, []string{"GLIBC_TUNABLES=glibc.malloc.hugetlb=1", mark}, false},
		{"run again, tunables cut by glibc", []string{"GLIBC_TUNABLES=glibc.malloc.check=0", mark},
			[]string{"GLIBC_TUNABLES=glibc.malloc.check=0", mark}, false},
		{"user chose off", []string{"GLIBC_TUNABLES=glibc.malloc.hugetlb=0"}, []string{"GLIBC_TUNABLES=glibc.malloc.hugetlb=0"}, false},
		{"already on, among others", []string{"GLIBC_TUNABLES=glibc.malloc.check=0:glibc.malloc.hugetlb=1"},
			[]string{"GLIBC_TUNABLES=glibc.malloc.check=0:glibc.malloc.hugetlb=1"}, false},
		{"a name that only starts alike", []string{"GLIBC_TUNABLES=glibc.malloc.hugetlbx=2"},
			[]string{"GLIBC_TUNABLES=glibc.malloc.hugetlb=1:glibc.malloc.hugetlbx=2", mark}, true},
		{"second entry left as it is", []string{"GLIBC_TUNABLES=a=1", "GLIBC_TUNABLES=b=2"},
			[]string{"GLIBC_TUNABLES=glibc.malloc.hugetlb=1:a=1", "GLIBC_TUNABLES=b=2", mark}, true},
	} {
		got, changed := withHugeMalloc(c.env)
		if changed != c.changed || !slices.Equal(got, c.want) {
			t.Errorf("%s: withHugeMalloc(%q) = %q, %v; want %q, %v", c.name, c.env, got, changed, c.want, c.changed)
		}
	}
}

// TestBatchIngestRunsWithHugeMalloc runs the built binary on a batch of
// mails whose last file is a FIFO: while the process waits on it, its
// environment (/proc/PID/environ, the one its program image started
// with) must carry the tunable, the user's own tunables kept, and the
// same pid must still be the process that stores every mail once.
func TestBatchIngestRunsWithHugeMalloc(t *testing.T) {
	if goruntime.GOOS != "linux" {
		t.Skip("glibc tunables and /proc are Linux's")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	var files []string
	for i := range ingestBatch + 20 {
		f := filepath.Join(dir, fmt.Sprintf("m%03d.eml", i))
		mail := fmt.Sprintf("From: Customer %d <c%d@example.net>\r\nTo: support@acme.test\r\nSubject: question %d\r\nMessage-ID: <q%d@example.net>\r\nDate: Mon, 10 Nov 2025 09:00:00 +0100\r\n\r\nHello, order %d does not arrive.\r\n", i, i, i, i, i)
		if err := os.WriteFile(f, []byte(mail), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	fifo := filepath.Join(dir, "last.eml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	files = append(files, fifo)
	cmd := exec.Command(bin, append([]string{"ingest", "--db", filepath.Join(dir, "d.db")}, files...)...)
	cmd.Env = append(os.Environ(), "GLIBC_TUNABLES=glibc.malloc.check=0")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	environ := fmt.Sprintf("/proc/%d/environ", cmd.Process.Pid)
	// glibc parses the tunables in place, a NUL over each colon: the
	// environment shows them as separate strings.
	want := []string{"GLIBC_TUNABLES=" + hugeMallocTunable + "=1", "glibc.malloc.check=0"}
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(environ)
		if err != nil {
			t.Fatalf("read %s: %v (stderr: %s)", environ, err, stderr.Bytes())
		}
		if env := strings.Split(string(b), "\x00"); slices.Contains(env, want[0]) {
			if i := slices.Index(env, want[0]); i+1 >= len(env) || env[i+1] != want[1] {
				t.Fatalf("the user's tunable is not kept after ours: %q", env)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the batch's environment never had %q: %q", want, strings.ReplaceAll(string(b), "\x00", " "))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The process runs again before it opens anything: it is now
	// waiting on the FIFO, the last file, with all the others read.
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w, "From: Last <last@example.net>\r\nTo: support@acme.test\r\nSubject: last\r\nMessage-ID: <last@example.net>\r\n\r\nThe last one.\r\n")
	w.Close()
	// Run again once, not again and again: it ends.
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ingest: %v\n%s", err, stderr.Bytes())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("ingest did not end within 60 s of its last file\n%s", stderr.Bytes())
	}
	created := 0
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"action":"created"`) {
			created++
		}
	}
	if created != len(files) {
		t.Fatalf("%d tickets created, want %d\n%s", created, len(files), stderr.Bytes())
	}
	if stderr.Len() > 0 && strings.Contains(stderr.String(), "huge pages") {
		t.Fatalf("stderr: %s", stderr.Bytes())
	}
}
