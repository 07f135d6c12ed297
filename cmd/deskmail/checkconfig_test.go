package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// manyMistakes is what check-config must say about
// testdata/many-mistakes.yaml: one problem of each kind, each on its
// own line with its line number and YAML path, all in one run, sorted
// by line.
var manyMistakes = []string{
	`:6: smtp.hostnme: unknown option; did you mean smtp.hostname?`,
	`:7: smtp.max_recipients: "lots" must be a whole number`,
	`:8: smtp.read_timeout: "forever" is not a duration (write 90s, 15m, 72h or 7d)`,
	`:9: smtp.listen: written twice (first at line 5); keep one`,
	`:10: smtp.trusted_relays[0]: "10.0.0/8" is not a CIDR (for example 10.0.0.0/24 or 2001:db8::/64)`,
	`:11: http.trusted_proxies[0]: "proxy.example.com" is not an IP address or CIDR (for example 10.0.0.5 or 10.0.0.0/24)`,
	`:14: threading.secret: environment variable DESKMAIL_TEST_UNSET_SECRET is not set (export it before starting deskmail)`,
	`:15: threading.noreply_senders: must be a list (written [a, b] or as "- item" lines), not "noreply@example.com"`,
	`:17: outbound.password: cannot read secret file /nonexistent/relay-password: no such file or directory`,
	`:18: colour: unknown option (deskmail.example.yaml lists every option)`,
	`:20: statuses[0].code: status code 4 is reserved (2 Open, 3 Pending, 4 Resolved, 5 Closed); custom statuses use codes 6 and above`,
	`:21: statuses[1].category: "paused" is not a category; use open, pending, resolved or closed`,
	`:24: pipelines[0].statuses[2]: status 9 is not declared under statuses (known: 2, 3, 4, 5, 6)`,
	`:25: pipelines[0].new_status: status 8 is not one of pipeline "default"'s statuses`,
	`:30: channels[1].pipeline: pipeline "defualt" is not declared under pipelines; did you mean "default"?`,
	`:31: channels[1].addresses[0]: address Support@example.com belongs to channel "support" and channel "sales"; an address may belong to one channel only`,
}

// copyMistakes writes testdata/many-mistakes.yaml into dir and returns
// its path and the problem lines expected for it.
func copyMistakes(t *testing.T, dir string) (string, []string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "many-mistakes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "deskmail.yaml")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	want := make([]string, len(manyMistakes))
	for i, m := range manyMistakes {
		want[i] = file + m
	}
	return file, want
}

// TestCheckConfigEveryProblem runs the built binary's check-config on a
// file with one mistake of each kind: every one is reported, with its
// line and YAML path, in one run, sorted by line, without Go type names
// or yaml.v3 jargon, and the exit status is 1.
func TestCheckConfigEveryProblem(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	file, want := copyMistakes(t, dir)
	cmd := exec.Command(bin, "check-config", file)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, "DESKMAIL_TEST_UNSET_SECRET=") })
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("check-config: %v, want exit status 1\n%s", err, stderr.String())
	}
	if len(out) != 0 {
		t.Errorf("stdout %q, want nothing", out)
	}
	got := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	want = append(want, file+": 16 problem(s)")
	if !slices.Equal(got, want) {
		t.Errorf("check-config printed:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, l := range got {
		l = strings.TrimPrefix(l, file)
		for _, jargon := range []string{"config.", "Config", "!!", "unmarshal", "yaml:"} {
			if strings.Contains(l, jargon) {
				t.Errorf("%q: says %q", l, jargon)
			}
		}
	}
}

// TestServeSameProblems proves that `serve` refusing to start and a
// running `serve` refusing a SIGHUP reload print the very lines
// check-config prints (the reload logs them as JSON with log.format:
// json, one "problem" value each).
func TestServeSameProblems(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	file, want := copyMistakes(t, dir)

	cmd := exec.Command(bin, "serve", "--config", file)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("serve on a broken file: %v, want exit status 1\n%s", err, stderr.String())
	}
	lines := strings.Split(stderr.String(), "\n")
	if !slices.Equal(lines[:len(want)], want) {
		t.Errorf("serve printed:\n%s\nwant first:\n%s", stderr.String(), strings.Join(want, "\n"))
	}
	if _, err := os.Stat(filepath.Join(dir, "deskmail.db")); err == nil {
		t.Errorf("serve created its database although it did not start")
	}

	good := "database: deskmail.db\nlog:\n  format: json\nchannels:\n  - name: support\n    addresses: [support@example.com]\n"
	if err := os.WriteFile(file, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	p, _, _ := startServe(t, bin, dir, "--config", file, "--smtp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
	copyMistakes(t, dir)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refused reload", 20*time.Second, func() bool { return strings.Contains(p.stderr.String(), "reload refused") })
	var logged []string
	for _, l := range strings.Split(strings.TrimSpace(p.stderr.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Errorf("log line is not JSON: %q", l)
			continue
		}
		if s, ok := rec["problem"].(string); ok {
			logged = append(logged, s)
		}
	}
	if !slices.Equal(logged, want[:len(want)]) {
		t.Errorf("the refused reload logged:\n%s\nwant:\n%s", strings.Join(logged, "\n"), strings.Join(want, "\n"))
	}
	p.stop()
}
