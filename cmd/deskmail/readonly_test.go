package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestReadOnlyCommandsNeedDatabase runs, through the built binary,
// every command that reads or changes an existing database against a
// database that does not exist (named by --db, and by a configuration's
// database:): each fails with one line naming it, and no file appears.
// Only serve, ingest and agents add create a database.
func TestReadOnlyCommandsNeedDatabase(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "deskmail.yaml")
	if err := os.WriteFile(cfg, []byte("database: fromconfig.db\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	commands := [][]string{
		{"tickets", "list"},
		{"tickets", "show", "1"},
		{"tickets", "update", "1", "--status", "4"},
		{"outbox", "list"},
		{"outbox", "retry", "1"},
		{"status"},
		{"backup", filepath.Join(dir, "copy.db")},
		{"agents", "list"},
		{"agents", "key", "alice@example.com"},
		{"agents", "password", "alice@example.com"},
		{"agents", "deactivate", "alice@example.com"},
		{"agents", "activate", "alice@example.com"},
		{"contacts", "list"},
		{"contacts", "list", "--bouncing"},
		{"contacts", "unflag", "jane@example.com"},
	}
	// Every command that opens a database must be in the table above
	// or be one of those that create it or open none.
	noDatabase := map[string]bool{"parse": true, "check-config": true, "version": true, "serve": true, "ingest": true, "import": true,
		"agents add": true, "channels test": true, "migrate": true} // migrate refuses a missing --from itself (TestMigrateToPostgres)
	for _, leaf := range leafCommands(t, bin) {
		name := strings.Join(leaf, " ")
		listed := slices.ContainsFunc(commands, func(c []string) bool { return len(c) >= len(leaf) && slices.Equal(c[:len(leaf)], leaf) })
		if !listed && !noDatabase[name] {
			t.Errorf("deskmail %s is not covered: add it to this test's commands (or to noDatabase if it opens no database or creates one)", name)
		}
	}
	for _, c := range commands {
		for _, how := range [][]string{{"--db", "missing.db"}, {"--config", cfg}} {
			args := append(append([]string(nil), c...), how...)
			cmd := exec.Command(bin, args...)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			line := strings.TrimSpace(string(out))
			if err == nil || strings.Count(line, "\n") > 0 || !strings.Contains(line, "does not exist") {
				t.Errorf("deskmail %s: %v, output %q; want a failure in one line saying the database does not exist", strings.Join(args, " "), err, out)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Fatalf("deskmail %s left %v in its directory", strings.Join(args, " "), names)
			}
		}
	}
	// The creators do create it.
	for _, args := range [][]string{{"agents", "add", "alice@example.com", "--db", "a.db"}, {"ingest", "--db", "i.db", filepath.Join("..", "..", "fixtures", "threading", "basic", "01-outlook-new.eml")}} {
		if abs, err := filepath.Abs(args[len(args)-1]); err == nil && args[0] == "ingest" {
			args[len(args)-1] = abs
		}
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("deskmail %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, f := range []string{"a.db", "i.db"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s not created: %v", f, err)
		}
	}
}
