package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadCommandsOnBothStores runs every command that reads a
// database, as people and scripts run them (plain and --json), against
// a database with a ticket, an outbound mail, a contact and an agent,
// on SQLite and on PostgreSQL: each succeeds and shows what is there.
// (`contacts list` once failed on PostgreSQL only: it asked for LIMIT
// -1, which SQLite reads as no limit.)
func TestReadCommandsOnBothStores(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db string) {
		bin := buildBinary(t)
		dir := t.TempDir()
		if out, err := exec.Command(bin, "agents", "add", "alice@acme.test", "--db", db).CombinedOutput(); err != nil {
			t.Fatalf("agents add: %v\n%s", err, out)
		}
		mail := filepath.Join(dir, "m.eml")
		if err := os.WriteFile(mail, []byte(mailText("Jane Doe <jane@example.test>", "support@acme.test", "Printer on fire", "fire@example.test", "", "Help.")), 0o644); err != nil {
			t.Fatal(err)
		}
		deskmailCmd(t, bin, dir, "ingest", "--db", db, mail)
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"tickets", "list"}, "Printer on fire"},
			{[]string{"tickets", "show", "1"}, "Printer on fire"},
			{[]string{"outbox", "list"}, "jane@example.test"},
			{[]string{"status"}, "outbox"},
			{[]string{"agents", "list"}, "alice@acme.test"},
			{[]string{"contacts", "list"}, "jane@example.test"},
			{[]string{"contacts", "list", "--bouncing"}, ""},
			{[]string{"version"}, "schema"},
		} {
			for _, json := range []bool{false, true} {
				args := append(append([]string(nil), c.args...), "--db", db)
				if json {
					args = append(args, "--json")
				}
				out := deskmailCmd(t, bin, dir, args...)
				if !strings.Contains(out, c.want) {
					t.Errorf("deskmail %s printed %q, want %q in it", strings.Join(args, " "), out, c.want)
				}
			}
		}
	})
}
