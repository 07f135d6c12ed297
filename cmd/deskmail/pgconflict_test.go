package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestCrossedBatchesTwoInstancesPostgres: two `deskmail ingest`
// processes on one PostgreSQL database at the same moment, each with a
// batch that answers the same tickets and comes from the same new
// customers, in opposite orders. Each batch then waits for rows the
// other holds (the tickets it updates, the contacts it creates): a
// deadlock when both take them one by one. Whatever PostgreSQL does
// about it, every mail must be threaded as if the batches had run one
// after the other: no mail kept raw because its threading "failed",
// every reply on its ticket, every new customer one contact.
func TestCrossedBatchesTwoInstancesPostgres(t *testing.T) {
	if !pgCluster.Available(t) {
		t.Skip("PostgreSQL is not available")
	}
	db := pgCluster.URL(t)
	bin := buildBinary(t)
	dir := t.TempDir()
	if out, err := exec.Command(bin, "agents", "add", "alice@acme.test", "--db", db).CombinedOutput(); err != nil {
		t.Fatalf("agents add: %v\n%s", err, out)
	}
	write := func(name, from, id, extra string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(mailText(from, "support@acme.test", "About "+id, id, extra, "Hello.")), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ingest := func(files []string) (string, error) {
		cmd := exec.Command(bin, append([]string{"ingest", "--db", db}, files...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err == nil && strings.Contains(stderr.String(), "threading failed") {
			err = fmt.Errorf("a mail was kept raw")
		}
		if err != nil {
			return string(out), fmt.Errorf("%v\n%s", err, stderr.String())
		}
		return string(out), nil
	}
	const tickets, rounds = 8, 6
	var parents []string
	for i := range tickets {
		parents = append(parents, write(fmt.Sprintf("parent-%d.eml", i), fmt.Sprintf("old%d@example.test", i), fmt.Sprintf("parent-%d@example.test", i), ""))
	}
	out, err := ingest(parents)
	if err != nil {
		t.Fatalf("ingest parents: %v", err)
	}
	ticketOf := map[string]any{}
	for _, l := range ingestLines(t, out) {
		ticketOf[fmt.Sprint(l["message_id"])] = l["ticket_id"]
	}
	for r := range rounds {
		var batches [2][]string
		for side := range 2 {
			for i := range tickets {
				k := i
				if side == 1 {
					k = tickets - 1 - i
				}
				batches[side] = append(batches[side],
					write(fmt.Sprintf("reply-%d-%d-%d.eml", r, side, k), fmt.Sprintf("old%d@example.test", k), fmt.Sprintf("reply-%d-%d-%d@example.test", r, side, k),
						fmt.Sprintf("In-Reply-To: <parent-%d@example.test>\n", k)),
					write(fmt.Sprintf("new-%d-%d-%d.eml", r, side, k), fmt.Sprintf("new%d-%d@example.test", r, k), fmt.Sprintf("new-%d-%d-%d@example.test", r, side, k), ""))
			}
		}
		var wg sync.WaitGroup
		outs := make([]string, 2)
		errs := make([]error, 2)
		for side := range 2 {
			wg.Go(func() { outs[side], errs[side] = ingest(batches[side]) })
		}
		wg.Wait()
		for side, err := range errs {
			if err != nil {
				t.Fatalf("round %d, ingest %d: %v", r, side, err)
			}
		}
		for side, out := range outs {
			lines := ingestLines(t, out)
			if len(lines) != 2*tickets {
				t.Fatalf("round %d, ingest %d: %d lines, want %d\n%s", r, side, len(lines), 2*tickets, out)
			}
			for _, l := range lines {
				id, action := fmt.Sprint(l["message_id"]), fmt.Sprint(l["action"])
				var k int
				switch {
				case strings.HasPrefix(id, "reply-"):
					fmt.Sscanf(id, fmt.Sprintf("reply-%d-%d-%%d@", r, side), &k)
					if want := ticketOf[fmt.Sprintf("parent-%d@example.test", k)]; action != "appended" || fmt.Sprint(l["ticket_id"]) != fmt.Sprint(want) {
						t.Errorf("round %d: %s was %s on ticket %v, want appended on ticket %v", r, id, action, l["ticket_id"], want)
					}
				case action != "created":
					t.Errorf("round %d: %s was %s, want created", r, id, action)
				}
			}
		}
	}
	// One contact per customer: 8 old, 8 new per round, and the agent
	// is not one.
	out = deskmailCmd(t, bin, dir, "contacts", "list", "--db", db, "--json")
	var emails []string
	for _, l := range strings.Split(out, `"email":`)[1:] {
		emails = append(emails, strings.SplitN(strings.TrimSpace(l), `"`, 3)[1])
	}
	slices.Sort(emails)
	if n := len(slices.Compact(slices.Clone(emails))); n != len(emails) || n != tickets*(1+rounds) {
		t.Errorf("%d contacts (%d addresses), want %d, one per customer: %v", len(emails), n, tickets*(1+rounds), emails)
	}
}
