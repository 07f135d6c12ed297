package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
)

func runTickets(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return runGroup(ctx, "tickets", []subcommand{
		{"list", "tickets list --db PATH [--json]   list tickets", func(ctx context.Context, args []string, _ io.Reader, stdout, _ io.Writer) error {
			return ticketsList(ctx, args, stdout)
		}},
		{"show", "tickets show ID --db PATH [--json]   one ticket with its conversations and history", func(ctx context.Context, args []string, _ io.Reader, stdout, _ io.Writer) error {
			return ticketsShow(ctx, args, stdout)
		}},
		{"update", "tickets update ID --db PATH [--status CODE] [--priority N]   change a ticket as an admin", func(ctx context.Context, args []string, _ io.Reader, stdout, _ io.Writer) error {
			return ticketsUpdate(ctx, args, stdout)
		}},
	}, args, stdin, stdout, stderr)
}

// openStore opens the database named by --db, or the configured one;
// it must exist (requireDatabase).
func openStore(ctx context.Context, db, cfgPath string) (*store.Store, error) {
	if db == "" && cfgPath == "" {
		return nil, fmt.Errorf("%w: --db PATH is required", errUsage)
	}
	if err := requireDatabase(db, cfgPath); err != nil {
		return nil, err
	}
	if db == "" {
		rt, err := openRuntime(ctx, cfgPath, "", false, nil)
		if err != nil {
			return nil, err
		}
		return rt.st, nil
	}
	return store.Open(ctx, db, store.Options{})
}

func ticketsList(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("tickets list", "--db PATH [--json] [--status CODE]", "Lists tickets.")
	db := fs.String("db", "", "database `PATH`")
	cfgPath := fs.String("config", "", "configuration `FILE`")
	asJSON := fs.Bool("json", false, "print JSON")
	status := fs.Int("status", 0, "only tickets with this status `CODE`")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	st, err := openStore(ctx, *db, *cfgPath)
	if err != nil {
		return err
	}
	defer st.Close()
	f := store.TicketFilter{}
	if *status > 0 {
		f.Status = []int{*status}
	}
	var list []store.Ticket
	if err := st.Read(ctx, func(tx *store.Tx) error {
		list, err = tx.ListTickets(f)
		return err
	}); err != nil {
		return err
	}
	if list == nil {
		list = []store.Ticket{}
	}
	if *asJSON {
		return writeJSON(stdout, list)
	}
	w := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tSTATUS\tPRIORITY\tREQUESTER\tSUBJECT\tUPDATED")
	for _, t := range list {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.StatusName, priorityWord(t.Priority), t.Requester.Email, oneLine(t.Subject, 60), t.UpdatedAt.Format("2006-01-02 15:04"))
	}
	return w.Flush()
}

// ticketDetail is `tickets show --json`: the ticket with its
// conversations and history.
type ticketDetail struct {
	store.Ticket
	Conversations []store.Conversation `json:"conversations"`
	History       []store.History      `json:"history"`
}

func ticketsShow(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("tickets show", "ID --db PATH [--json]", "Shows one ticket with its conversations and history.")
	db := fs.String("db", "", "database `PATH`")
	cfgPath := fs.String("config", "", "configuration `FILE`")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	id, err := ticketID(pos)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, *db, *cfgPath)
	if err != nil {
		return err
	}
	defer st.Close()
	var d ticketDetail
	var names map[int]string
	if err := st.Read(ctx, func(tx *store.Tx) error {
		tk, err := tx.Ticket(id)
		if err != nil {
			return err
		}
		if names, err = statusNames(tx); err != nil {
			return err
		}
		d.Ticket = *tk
		if d.Conversations, err = tx.Conversations(id); err != nil {
			return err
		}
		d.History, err = tx.TicketHistory(id)
		return err
	}); err != nil {
		return err
	}
	if d.Conversations == nil {
		d.Conversations = []store.Conversation{}
	}
	if *asJSON {
		return writeJSON(stdout, d)
	}
	t := d.Ticket
	names[t.Status] = t.StatusName
	fmt.Fprintf(stdout, "Ticket #%d: %s\nStatus: %s  Priority: %s  Requester: %s\n", t.ID, t.Subject, statusLabel(t.Status, names), priorityLabel(t.Priority), mailbox(t.Requester.Name, t.Requester.Email))
	if len(t.CcEmails) > 0 {
		fmt.Fprintf(stdout, "Cc: %s\n", strings.Join(t.CcEmails, ", "))
	}
	if t.ParentID != nil {
		fmt.Fprintf(stdout, "Follow-up of #%d\n", *t.ParentID)
	}
	for _, c := range d.Conversations {
		what := "incoming " + c.Kind
		if !c.Incoming {
			what = "outgoing " + c.Kind
		}
		if c.Private {
			what = "private " + what
		}
		fmt.Fprintf(stdout, "\n--- #%d, %s: %s from %s\n%s\n", c.ID, c.CreatedAt.Local().Format("2006-01-02 15:04"), what, c.FromEmail, strings.TrimSpace(c.ReplyText))
	}
	fmt.Fprintln(stdout, "\nHistory:")
	for _, h := range d.History {
		fmt.Fprintf(stdout, "  %s  %s\n", h.At.Local().Format("2006-01-02 15:04:05"), historySentence(h, names))
	}
	return nil
}

func ticketsUpdate(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("tickets update", "ID --db PATH [--status CODE] [--priority N]",
		"Changes a ticket as an admin would, with the same lifecycle rules and history as mail.")
	db := fs.String("db", "", "database `PATH`")
	cfgPath := fs.String("config", "", "configuration `FILE`")
	status := fs.Int("status", 0, "new status `CODE` (2 Open, 3 Pending, 4 Resolved, 5 Closed, or a custom code)")
	priority := fs.Int("priority", 0, "new priority `N` (1 Low … 4 Urgent)")
	asJSON := fs.Bool("json", false, "print the updated ticket as JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	id, err := ticketID(pos)
	if err != nil {
		return err
	}
	if *db == "" && *cfgPath == "" {
		return fmt.Errorf("%w: --db PATH is required", errUsage)
	}
	var c threading.Changes
	if *status != 0 {
		c.Status = status
	}
	if *priority != 0 {
		c.Priority = priority
	}
	if c.Empty() {
		return fmt.Errorf("%w: nothing to change (use --status CODE or --priority N)", errUsage)
	}
	if err := requireDatabase(*db, *cfgPath); err != nil {
		return err
	}
	rt, err := openRuntime(ctx, *cfgPath, *db, *cfgPath == "", stderrLogger())
	if err != nil {
		return err
	}
	defer rt.Close()
	tk, err := rt.pipeline.Update(ctx, id, c, threading.Actor{Type: "admin", Name: "deskmail tickets update"})
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, tk)
	}
	fmt.Fprintf(stdout, "ticket #%d: status %s, priority %s\n", tk.ID, statusLabel(tk.Status, map[int]string{tk.Status: tk.StatusName}), priorityLabel(tk.Priority))
	return nil
}

func ticketID(pos []string) (int64, error) {
	if len(pos) != 1 {
		return 0, fmt.Errorf("%w: expected one ticket ID", errUsage)
	}
	id, err := strconv.ParseInt(strings.TrimPrefix(pos[0], "#"), 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%w: %q is not a ticket ID", errUsage, pos[0])
	}
	return id, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
