package main

import (
	"database/sql"
	"fmt"
	"maps"
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
// every reply on its ticket, every new customer one contact. (Most of
// the crossing is kept apart by the locks a batch takes first; the
// replies by subject token still cross and run again.)
func TestCrossedBatchesTwoInstancesPostgres(t *testing.T) {
	db, bin, dir, write := twoInstancesSetup(t)
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
	// Tickets that the batches reach by their subject token only: a
	// batch cannot lock them ahead (store.Tx.LockAhead knows the
	// tickets its Message-IDs name), so on these the batches do cross,
	// PostgreSQL breaks the deadlock, and the loser runs again.
	for i := range 2 {
		// Named: a batch locks no address of a known, named contact.
		parents = append(parents, write(fmt.Sprintf("token-%d.eml", i), fmt.Sprintf("Tok %d <tok%d@example.test>", i, i), fmt.Sprintf("token-%d@example.test", i), ""))
	}
	out, err := ingest(parents)
	if err != nil {
		t.Fatalf("ingest parents: %v", err)
	}
	customers := map[string]bool{}
	for i := range tickets {
		customers[fmt.Sprintf("old%d@example.test", i)] = true
	}
	customers["tok0@example.test"], customers["tok1@example.test"] = true, true
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
				if r%2 == 1 {
					// Token rounds: nothing but the token tickets in common.
					for j := range 2 {
						from := fmt.Sprintf("solo%d-%d-%d-%d@example.test", r, side, k, j)
						batches[side] = append(batches[side], write(fmt.Sprintf("new-%d-%d-%d-%d.eml", r, side, k, j), from, fmt.Sprintf("new-%d-%d-%d-%d@example.test", r, side, k, j), ""))
						customers[from] = true
					}
					continue
				}
				customers[fmt.Sprintf("new%d-%d@example.test", r, k)] = true
				batches[side] = append(batches[side],
					write(fmt.Sprintf("reply-%d-%d-%d.eml", r, side, k), fmt.Sprintf("old%d@example.test", k), fmt.Sprintf("reply-%d-%d-%d@example.test", r, side, k),
						fmt.Sprintf("In-Reply-To: <parent-%d@example.test>\n", k)),
					write(fmt.Sprintf("new-%d-%d-%d.eml", r, side, k), fmt.Sprintf("new%d-%d@example.test", r, k), fmt.Sprintf("new-%d-%d-%d@example.test", r, side, k), ""))
			}
			// The two token tickets, one at each end, in opposite orders.
			for i, k := range []int{side, 1 - side} {
				tk := ticketOf[fmt.Sprintf("token-%d@example.test", k)]
				p := filepath.Join(dir, fmt.Sprintf("bytoken-%d-%d-%d.eml", r, side, k))
				text := mailText(fmt.Sprintf("Tok %d <tok%d@example.test>", k, k), "support@acme.test", fmt.Sprintf("Re: [#%v] About token-%d", tk, k),
					fmt.Sprintf("bytoken-%d-%d-%d@example.test", r, side, k), "", "Still there.")
				if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					batches[side] = append([]string{p}, batches[side]...)
				} else {
					batches[side] = append(batches[side], p)
				}
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
			if len(lines) != 2*tickets+2 { // token rounds: 2*tickets new ones
				t.Fatalf("round %d, ingest %d: %d lines, want %d\n%s", r, side, len(lines), 2*tickets+2, out)
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
				case strings.HasPrefix(id, "bytoken-"):
					fmt.Sscanf(id, fmt.Sprintf("bytoken-%d-%d-%%d@", r, side), &k)
					if want := ticketOf[fmt.Sprintf("token-%d@example.test", k)]; action != "appended" || fmt.Sprint(l["ticket_id"]) != fmt.Sprint(want) {
						t.Errorf("round %d: %s was %s on ticket %v, want appended on ticket %v", r, id, action, l["ticket_id"], want)
					}
				case action != "created":
					t.Errorf("round %d: %s was %s, want created", r, id, action)
				}
			}
		}
	}
	// One contact per customer (the agent is not one).
	out = deskmailCmd(t, bin, dir, "contacts", "list", "--db", db, "--json")
	var emails []string
	for _, l := range strings.Split(out, `"email":`)[1:] {
		emails = append(emails, strings.SplitN(strings.TrimSpace(l), `"`, 3)[1])
	}
	slices.Sort(emails)
	want := slices.Sorted(maps.Keys(customers))
	if !slices.Equal(emails, want) {
		t.Errorf("contacts\n%v\nwant one per customer\n%v", emails, want)
	}
	var deadlocks int
	if pg, err := sql.Open("pgx", db); err == nil {
		pg.QueryRow("SELECT deadlocks FROM pg_stat_database WHERE datname=current_database()").Scan(&deadlocks)
		pg.Close()
	}
	t.Logf("PostgreSQL broke %d deadlocks in this database so far (the token rounds' batches run again)", deadlocks)
}
