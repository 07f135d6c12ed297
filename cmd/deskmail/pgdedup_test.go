package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestSameMailTwoInstancesPostgres: the same mail, delivered to two MX
// hosts, is ingested by two `deskmail ingest` processes on one
// PostgreSQL database at the same moment, each in a batch with other
// mail (whose Message-IDs a batch looks up ahead, in one query): it is
// stored once, one process reports it created and the other duplicate,
// and every other mail of both batches is stored once.
func TestSameMailTwoInstancesPostgres(t *testing.T) {
	db, bin, dir, write := twoInstancesSetup(t)
	const rounds = 8
	for r := range rounds {
		shared := write(fmt.Sprintf("shared-%d.eml", r), "ann@example.test", fmt.Sprintf("shared-%d@example.test", r), "")
		var batches [2][]string
		for side := range 2 {
			for i := range 6 {
				batches[side] = append(batches[side], write(fmt.Sprintf("own-%d-%d-%d.eml", r, side, i),
					fmt.Sprintf("c%d@example.test", i), fmt.Sprintf("own-%d-%d-%d@example.test", r, side, i), ""))
			}
			// The shared mail sits at another place in each batch, and a
			// reply to it follows in the first.
			at := 2 + side*2
			batches[side] = append(batches[side][:at], append([]string{shared}, batches[side][at:]...)...)
		}
		batches[0] = append(batches[0], write(fmt.Sprintf("reply-%d.eml", r), "ann@example.test", fmt.Sprintf("reply-%d@example.test", r),
			fmt.Sprintf("In-Reply-To: <shared-%d@example.test>\n", r)))
		var wg sync.WaitGroup
		outs := make([]string, 2)
		errs := make([]error, 2)
		for side := range 2 {
			wg.Go(func() {
				cmd := exec.Command(bin, append([]string{"ingest", "--db", db}, batches[side]...)...)
				var stderr strings.Builder
				cmd.Stderr = &stderr
				out, err := cmd.Output()
				outs[side] = string(out)
				if err != nil {
					errs[side] = fmt.Errorf("%v\n%s", err, stderr.String())
				}
			})
		}
		wg.Wait()
		for side, err := range errs {
			if err != nil {
				t.Fatalf("round %d, ingest %d: %v", r, side, err)
			}
		}
		actions := map[string][]string{}
		var sharedTicket, replyTicket any
		for _, out := range outs {
			for _, l := range ingestLines(t, out) {
				id := fmt.Sprint(l["message_id"])
				actions[id] = append(actions[id], fmt.Sprint(l["action"]))
				if id == fmt.Sprintf("shared-%d@example.test", r) && l["action"] == "created" {
					sharedTicket = l["ticket_id"]
				}
				if id == fmt.Sprintf("reply-%d@example.test", r) {
					replyTicket = l["ticket_id"]
				}
			}
		}
		got := strings.Join(actions[fmt.Sprintf("shared-%d@example.test", r)], " ")
		if got != "created duplicate" && got != "duplicate created" {
			t.Fatalf("round %d: the shared mail was %q, want created once and duplicate once\n%s\n%s", r, got, outs[0], outs[1])
		}
		if replyTicket != sharedTicket {
			t.Errorf("round %d: the reply went to ticket %v, the shared mail is ticket %v", r, replyTicket, sharedTicket)
		}
		for id, a := range actions {
			if strings.HasPrefix(id, "own-") && (len(a) != 1 || a[0] != "created") {
				t.Errorf("round %d: %s was %v", r, id, a)
			}
		}
	}
	// Stored once: one ticket per own mail and per shared mail.
	out := deskmailCmd(t, bin, dir, "tickets", "list", "--db", db, "--json")
	if n := strings.Count(out, `"subject":`); n != rounds*13 {
		t.Errorf("%d tickets, want %d (12 own mails and 1 shared mail per round)", n, rounds*13)
	}
}

// twoInstancesSetup is what the tests of two `deskmail ingest` on one
// PostgreSQL start from (skipped without PostgreSQL): a fresh database
// with an agent, the built binary, a directory, and write, which puts
// a mail "About ID" in it and returns its path.
func twoInstancesSetup(t *testing.T) (db, bin, dir string, write func(name, from, id, extra string) string) {
	t.Helper()
	if !pgCluster.Available(t) {
		t.Skip("PostgreSQL is not available")
	}
	db = pgCluster.URL(t)
	bin = buildBinary(t)
	dir = t.TempDir()
	if out, err := exec.Command(bin, "agents", "add", "alice@acme.test", "--db", db).CombinedOutput(); err != nil {
		t.Fatalf("agents add: %v\n%s", err, out)
	}
	write = func(name, from, id, extra string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(mailText(from, "support@acme.test", "About "+id, id, extra, "Hello.")), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return db, bin, dir, write
}
