package main

import (
	"errors"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// runBin runs the built binary and returns its exit status and output.
func runBin(t *testing.T, bin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = t.TempDir()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatalf("deskmail %s: %v", strings.Join(args, " "), err)
	return 0, "", ""
}

// leafCommands lists every command and subcommand that does the work
// (["tickets", "show"], ["status"]), as the built binary's help lists
// them: each entry of commands(), and for a group the subcommands its
// --help lists.
func leafCommands(t *testing.T, bin string) [][]string {
	t.Helper()
	subLine := regexp.MustCompile(`(?m)^  deskmail (\S+) (\S+)`)
	var out [][]string
	for _, c := range commands() {
		_, help, _ := runBin(t, bin, c.name, "--help")
		var subs []string
		for _, m := range subLine.FindAllStringSubmatch(help, -1) {
			if m[1] == c.name {
				subs = append(subs, m[2])
			}
		}
		if len(subs) == 0 {
			out = append(out, []string{c.name})
		}
		for _, s := range subs {
			out = append(out, []string{c.name, s})
		}
	}
	return out
}

// TestHelpEveryCommand runs every registered command (and every
// subcommand its help lists) through the built binary: -h, --help and
// `deskmail help CMD` print its usage on stdout and exit 0 without
// doing anything else; an unknown flag or subcommand exits 2 with the
// usage on stderr. A command added to commands() is covered here
// without touching this test.
func TestHelpEveryCommand(t *testing.T) {
	bin := buildBinary(t)

	code, out, errOut := runBin(t, bin, "help")
	if code != 0 || errOut != "" {
		t.Fatalf("deskmail help: exit %d, stderr %q", code, errOut)
	}
	for _, c := range commands() {
		if !strings.Contains(out, "  deskmail "+c.name+" ") && !strings.Contains(out, "  deskmail "+c.name+"\n") {
			t.Errorf("deskmail help does not list %s:\n%s", c.name, out)
		}
	}
	if code, _, errOut := runBin(t, bin); code != 2 || !strings.Contains(errOut, "usage: deskmail COMMAND") {
		t.Errorf("deskmail alone: exit %d, stderr %q; want 2 and the usage", code, errOut)
	}
	if code, _, errOut := runBin(t, bin, "frobnicate"); code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) || !strings.Contains(errOut, "usage: deskmail COMMAND") {
		t.Errorf("unknown command: exit %d, stderr %q; want 2 and the usage", code, errOut)
	}

	subLine := regexp.MustCompile(`(?m)^  deskmail (\S+) (\S+)`)
	var check func(words []string)
	check = func(words []string) {
		name := strings.Join(words, " ")
		var helpOut string
		for _, args := range [][]string{append(words, "-h"), append(words, "--help"), append([]string{"help"}, words...)} {
			code, out, errOut := runBin(t, bin, args...)
			if code != 0 || errOut != "" || !strings.HasPrefix(out, "usage: deskmail "+name) {
				t.Errorf("deskmail %s: exit %d, stdout %q, stderr %q; want 0 and \"usage: deskmail %s…\" on stdout",
					strings.Join(args, " "), code, out, errOut, name)
			}
			helpOut = out
		}
		// A group lists its subcommands: check each of them too.
		var subs []string
		for _, m := range subLine.FindAllStringSubmatch(helpOut, -1) {
			if len(words) == 1 && m[1] == words[0] {
				subs = append(subs, m[2])
			}
		}
		if len(subs) > 0 {
			code, _, errOut := runBin(t, bin, append(words, "frobnicate")...)
			if code != 2 || !strings.Contains(errOut, "usage: deskmail "+name) {
				t.Errorf("deskmail %s frobnicate: exit %d, stderr %q; want 2 and the usage", name, code, errOut)
			}
			for _, s := range subs {
				check(append(append([]string(nil), words...), s))
			}
			return
		}
		code, _, errOut := runBin(t, bin, append(words, "--no-such-flag")...)
		if code != 2 || !strings.Contains(errOut, "-no-such-flag") || !strings.Contains(errOut, "usage: deskmail "+name) {
			t.Errorf("deskmail %s --no-such-flag: exit %d, stderr %q; want 2, the error and the usage", name, code, errOut)
		}
	}
	for _, c := range commands() {
		check([]string{c.name})
	}
}
