package archive

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func msg(id, date, body string) string {
	return "From: a@example.org\nTo: support@acme.test\nSubject: s\nMessage-ID: <" + id + ">\nDate: " + date + "\n\n" + body + "\n"
}

func TestScanMixedSources(t *testing.T) {
	dir := t.TempDir()
	mbox := "From a@example.org Mon Mar  2 09:00:00 2026\n" + msg("m1@x", "Mon, 02 Mar 2026 09:00:00 +0000", "first\n>From the start, quoted.\n>>From twice.") +
		"\nFrom b@example.org Wed Mar  4 09:00:00 2026\n" + msg("m3@x", "Wed, 04 Mar 2026 09:00:00 +0000", "third")
	write(t, filepath.Join(dir, "old.mbox"), mbox)
	write(t, filepath.Join(dir, "md", "cur", "1.host:2,S"), msg("d2@x", "Tue, 03 Mar 2026 09:00:00 +0000", "second"))
	write(t, filepath.Join(dir, "md", "new", "2.host"), msg("d4@x", "Thu, 05 Mar 2026 09:00:00 +0000", "fourth"))
	write(t, filepath.Join(dir, "md", "tmp", "3.host"), msg("tmp@x", "Thu, 05 Mar 2026 09:00:00 +0000", "being written"))
	write(t, filepath.Join(dir, "md", "dovecot-uidlist"), "3 V1 N2\n")
	write(t, filepath.Join(dir, "eml", "five.eml"), msg("e5@x", "Fri, 06 Mar 2026 09:00:00 +0000", "fifth"))
	msgs, errs := Scan([]string{filepath.Join(dir, "old.mbox"), filepath.Join(dir, "md"), filepath.Join(dir, "eml")})
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	var ids []string
	for _, m := range msgs {
		b, err := m.Read(0)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		i := strings.Index(s, "Message-ID: <")
		ids = append(ids, s[i+13:i+13+strings.Index(s[i+13:], ">")])
		if strings.Contains(s, "m1@x") && (!strings.Contains(s, "\nFrom the start, quoted.\n>From twice.") || strings.Contains(s, "From b@example.org")) {
			t.Errorf("mbox message 1 read as %q", s)
		}
	}
	if got := strings.Join(ids, " "); got != "m1@x d2@x m3@x d4@x e5@x" {
		t.Errorf("order %s", got)
	}
}

func TestReadLimit(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "big.eml"), msg("b@x", "Mon, 02 Mar 2026 09:00:00 +0000", strings.Repeat("x", 1000)))
	msgs, _ := Scan([]string{dir})
	if _, err := msgs[0].Read(100); err == nil {
		t.Fatal("a message over the limit was read")
	}
}

func TestScanMissingPath(t *testing.T) {
	if _, errs := Scan([]string{filepath.Join(t.TempDir(), "nope")}); len(errs) != 1 {
		t.Fatalf("errors %v", errs)
	}
}
