package outbound

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deskmail/deskmail/locale"
)

// Built-in templates compile on first use; every one must compile.
func TestBuiltinTemplatesCompile(t *testing.T) {
	tm, err := loadTemplates("", []string{"support"})
	if err != nil {
		t.Fatal(err)
	}
	if len(tm.m) != len(locale.Builtin)*len(templateNames) {
		t.Fatalf("%d templates, want %d", len(tm.m), len(locale.Builtin)*len(templateNames))
	}
	for key, p := range tm.m {
		if err := p.compiled(); err != nil {
			t.Errorf("%s: %v", key, err)
		}
	}
}

// A broken file in templates_dir is still reported when the templates
// are loaded (at start or reload), not when the first mail needs it.
func TestBrokenOverrideReportedAtLoad(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "fr"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fr", "closing.txt.tmpl"), []byte("Bonjour {{.Ticket.Subject"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := loadTemplates(dir, []string{"support"})
	if err == nil || !strings.Contains(err.Error(), "fr/closing.txt.tmpl") {
		t.Fatalf("err = %v, want the broken fr/closing.txt.tmpl named", err)
	}
}
