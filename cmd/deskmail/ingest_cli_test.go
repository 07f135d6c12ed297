package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/deskmail/deskmail/store"
)

// The CLI contract of DESIGN.md ("The command line"): these tests run
// the real command functions and read their JSON as an outside tool
// would.

func fixture(t *testing.T, scenario, name string) string {
	t.Helper()
	p := filepath.Join("..", "..", "fixtures", "threading", scenario, name+".eml")
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// deskmail runs one command and returns its exit status and output.
func deskmail(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func keysOf(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// hasKeys checks that every key is present (absent values must be
// null or [], never missing) and that list keys hold arrays.
func hasKeys(t *testing.T, what string, m map[string]any, keys, lists []string) {
	t.Helper()
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			t.Errorf("%s: key %q missing (have %v)", what, k, keysOf(m))
		}
	}
	for _, k := range lists {
		if _, ok := m[k].([]any); !ok {
			t.Errorf("%s: %q = %v, want a JSON array", what, k, m[k])
		}
	}
}

var ticketKeys = []string{"id", "subject", "status", "priority", "type", "group", "responder", "requester", "tags", "cc_emails",
	"channel", "parent_ticket_id", "source", "created_at", "updated_at", "first_responded_at", "agent_responded_at",
	"requester_responded_at", "status_updated_at", "resolved_at", "closed_at"}

func ingestLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("ingest printed %q: %v", l, err)
		}
		want := []string{"action", "conversation_id", "file", "message_id", "parent_ticket_id", "status", "ticket_id"}
		if got := keysOf(m); !slices.Equal(got, want) {
			t.Errorf("ingest line keys %v, want exactly %v", got, want)
		}
		lines = append(lines, m)
	}
	return lines
}

func TestCLIIngestTicketsContract(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, db string) {
		if !store.IsPostgres(db) {
			// tickets list does not create a database; agents add does.
			if code, _, _ := deskmail(t, "", "tickets", "list", "--db", db, "--json"); code == 0 {
				t.Fatalf("tickets list on a missing database: exit 0")
			}
		}
		cliIngestTicketsContract(t, db)
	})
}

func cliIngestTicketsContract(t *testing.T, db string) {
	if code, _, errOut := deskmail(t, "", "agents", "add", "agent@example.com", "--db", db); code != 0 {
		t.Fatalf("agents add: exit %d: %s", code, errOut)
	}
	code, out, errOut := deskmail(t, "", "tickets", "list", "--db", db, "--json")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("tickets list on an empty database: exit %d, %q %q; want []", code, out, errOut)
	}

	stdinMail, err := os.ReadFile(fixture(t, "newcomer", "04-requester-reply"))
	if err != nil {
		t.Fatal(err)
	}
	first := fixture(t, "newcomer", "01-new")
	code, out, errOut = deskmail(t, string(stdinMail), "ingest", "--db", db, first, "-", first, fixture(t, "noise", "07-garbage"))
	if code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, errOut)
	}
	lines := ingestLines(t, out)
	if len(lines) != 4 {
		t.Fatalf("ingest printed %d lines for 4 messages:\n%s", len(lines), out)
	}
	want := []struct {
		file, action string
		ticket       any
	}{
		{first, "created", 1.0},
		{"-", "appended", 1.0},
		{first, "duplicate", 1.0},
		{fixture(t, "noise", "07-garbage"), "ignored", nil},
	}
	for i, w := range want {
		l := lines[i]
		if l["file"] != w.file || l["action"] != w.action || l["ticket_id"] != w.ticket {
			t.Errorf("line %d: %v, want file %s action %s ticket %v", i, l, w.file, w.action, w.ticket)
		}
	}
	if lines[0]["message_id"] != "CANew1=comer@mail.gmail.com" || lines[0]["status"] != 2.0 || lines[0]["parent_ticket_id"] != nil ||
		lines[0]["conversation_id"] == nil {
		t.Errorf("created line %v", lines[0])
	}

	code, out, errOut = deskmail(t, "", "tickets", "list", "--db", db, "--json")
	if code != 0 {
		t.Fatalf("tickets list: exit %d: %s", code, errOut)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 {
		t.Fatalf("tickets list: %v, %d tickets: %s", err, len(list), out)
	}
	hasKeys(t, "tickets list", list[0], ticketKeys, []string{"tags", "cc_emails"})

	code, out, errOut = deskmail(t, "", "tickets", "show", "1", "--db", db, "--json")
	if code != 0 {
		t.Fatalf("tickets show: exit %d: %s", code, errOut)
	}
	var show map[string]any
	if err := json.Unmarshal([]byte(out), &show); err != nil {
		t.Fatal(err)
	}
	hasKeys(t, "tickets show", show, append(ticketKeys, "conversations", "history"), []string{"tags", "cc_emails", "conversations", "history"})
	req, _ := show["requester"].(map[string]any)
	if req["email"] != "jane.doe@customer.example" || req["name"] != "Jane Doe" {
		t.Errorf("requester %v", show["requester"])
	}
	if cc, _ := show["cc_emails"].([]any); len(cc) != 1 || cc[0] != "carol.diaz@customer.example" {
		t.Errorf("cc_emails %v, want the colleague the requester copied", show["cc_emails"])
	}
	if show["type"] != nil || show["parent_ticket_id"] != nil || show["closed_at"] != nil {
		t.Errorf("absent values must be null: type %v parent %v closed_at %v", show["type"], show["parent_ticket_id"], show["closed_at"])
	}
	convs, _ := show["conversations"].([]any)
	if len(convs) != 2 {
		t.Fatalf("%d conversations, want 2", len(convs))
	}
	for _, c := range convs {
		hasKeys(t, "conversation", c.(map[string]any), []string{"id", "incoming", "private", "from_email", "to_emails", "cc_emails", "subject",
			"body_text", "reply_text", "message_id", "attachments", "created_at"}, []string{"to_emails", "cc_emails", "attachments"})
	}
	hist, _ := show["history"].([]any)
	actions := map[string]bool{}
	for _, h := range hist {
		m := h.(map[string]any)
		hasKeys(t, "history", m, []string{"at", "actor_type", "actor", "action", "note"}, nil)
		actions[m["action"].(string)] = true
	}
	if !actions["created"] || !actions["cc_added"] {
		t.Errorf("history actions %v, want created and cc_added", actions)
	}

	// An admin resolves the ticket; the customer's next reply reopens it.
	code, out, errOut = deskmail(t, "", "tickets", "update", "1", "--db", db, "--status", "4", "--priority", "3", "--json")
	if code != 0 {
		t.Fatalf("tickets update: exit %d: %s", code, errOut)
	}
	var upd map[string]any
	if err := json.Unmarshal([]byte(out), &upd); err != nil {
		t.Fatal(err)
	}
	hasKeys(t, "tickets update", upd, ticketKeys, []string{"tags", "cc_emails"})
	if upd["status"] != 4.0 || upd["priority"] != 3.0 || upd["resolved_at"] == nil {
		t.Errorf("updated ticket: status %v priority %v resolved_at %v", upd["status"], upd["priority"], upd["resolved_at"])
	}
	code, out, errOut = deskmail(t, "", "ingest", "--db", db, fixture(t, "newcomer", "03-requester-uppercase"))
	if code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, errOut)
	}
	if l := ingestLines(t, out)[0]; l["action"] != "reopened" || l["ticket_id"] != 1.0 || l["status"] != 2.0 {
		t.Errorf("reply to a resolved ticket: %v, want reopened to status 2", l)
	}
	_, out, _ = deskmail(t, "", "tickets", "show", "1", "--db", db, "--json")
	show = nil
	if err := json.Unmarshal([]byte(out), &show); err != nil {
		t.Fatal(err)
	}
	var changes []string
	for _, h := range show["history"].([]any) {
		m := h.(map[string]any)
		if m["action"] == "status_changed" {
			changes = append(changes, m["actor_type"].(string)+":"+m["old_value"].(string)+"->"+m["new_value"].(string))
		}
	}
	if !slices.Equal(changes, []string{"admin:2->4", "mail:4->2"}) {
		t.Errorf("status history %v, want the admin's change then the mail's", changes)
	}
}

func TestCLIErrors(t *testing.T) {
	db := filepath.Join(t.TempDir(), "x.db")
	if code, _, errOut := deskmail(t, "", "ingest", "--db", db, fixture(t, "basic", "01-outlook-new")); code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, errOut)
	}
	cases := []struct {
		name string
		args []string
	}{
		{"missing file", []string{"ingest", "--db", db, filepath.Join(t.TempDir(), "nope.eml")}},
		{"no such ticket", []string{"tickets", "show", "99", "--db", db, "--json"}},
		{"unknown status", []string{"tickets", "update", "1", "--db", db, "--status", "99"}},
		{"bad priority", []string{"tickets", "update", "1", "--db", db, "--priority", "9"}},
		{"no ticket id", []string{"tickets", "show", "--db", db}},
		{"no database", []string{"tickets", "list", "--json"}},
	}
	for _, c := range cases {
		code, _, errOut := deskmail(t, "", c.args...)
		if code == 0 {
			t.Errorf("%s: exit 0, want an error", c.name)
		}
		// One line per error (ingest adds a per-file line and a total).
		for _, l := range strings.Split(strings.TrimSpace(errOut), "\n") {
			if !strings.HasPrefix(l, "deskmail "+c.args[0]+": ") {
				t.Errorf("%s: stderr line %q, want \"deskmail %s: ...\"", c.name, l, c.args[0])
			}
		}
		if strings.TrimSpace(errOut) == "" || strings.Count(errOut, "\n") > 2 {
			t.Errorf("%s: stderr %q, want one clear line", c.name, errOut)
		}
	}
	// The failed update changed nothing.
	_, out, _ := deskmail(t, "", "tickets", "show", "1", "--db", db, "--json")
	var show map[string]any
	if err := json.Unmarshal([]byte(out), &show); err != nil {
		t.Fatal(err)
	}
	if show["status"] != 2.0 || show["priority"] != 1.0 {
		t.Errorf("after failed updates: status %v priority %v", show["status"], show["priority"])
	}
}
