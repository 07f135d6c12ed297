package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/deskmail/deskmail/store"
)

func runOutbox(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return runGroup(ctx, "outbox", []subcommand{
		{"list", "outbox list --db PATH [--json] [--state STATE]   queued and sent outbound mail", func(ctx context.Context, args []string, _ io.Reader, stdout, _ io.Writer) error {
			return outboxList(ctx, args, stdout)
		}},
		{"retry", "outbox retry ID... --db PATH   deliver failed mail again", func(ctx context.Context, args []string, _ io.Reader, stdout, _ io.Writer) error {
			return outboxRetry(ctx, args, stdout)
		}},
	}, args, stdin, stdout, stderr)
}

// outboxJSON is one line of `deskmail outbox list --json`.
type outboxJSON struct {
	ID        int64      `json:"id"`
	TicketID  *int64     `json:"ticket_id"`
	To        []string   `json:"to"`
	Subject   string     `json:"subject"`
	MessageID string     `json:"message_id"`
	State     string     `json:"state"`
	Attempts  int        `json:"attempts"`
	Kind      string     `json:"kind"`
	CreatedAt time.Time  `json:"created_at"`
	NextAt    *time.Time `json:"next_attempt_at"`
	SentAt    *time.Time `json:"sent_at"`
	LastError *string    `json:"last_error"`
	Raw       string     `json:"raw"`
}

func outboxList(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("outbox list", "--db PATH [--json] [--state STATE]", "Lists queued and sent outbound mail.")
	db := fs.String("db", "", "database `PATH`")
	cfgPath := fs.String("config", "", "configuration `FILE`")
	asJSON := fs.Bool("json", false, "print JSON")
	state := fs.String("state", "", "only mail in this `STATE` (queued, sent, failed, suppressed)")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	switch *state {
	case "", store.OutboxQueued, store.OutboxSent, store.OutboxFailed, store.OutboxSuppressed:
	default:
		return fmt.Errorf("%w: --state %q must be queued, sent, failed or suppressed", errUsage, *state)
	}
	st, err := openStore(ctx, *db, *cfgPath)
	if err != nil {
		return err
	}
	defer st.Close()
	var rows []store.OutboxMail
	if err := st.Read(ctx, func(tx *store.Tx) error {
		rows, err = tx.ListOutbox(store.OutboxFilter{State: *state, WithRaw: *asJSON})
		return err
	}); err != nil {
		return err
	}
	if *asJSON {
		out := make([]outboxJSON, 0, len(rows))
		for _, m := range rows {
			j := outboxJSON{ID: m.ID, TicketID: m.TicketID, To: m.RcptTo, Subject: m.Subject, MessageID: m.MessageID,
				State: m.State, Attempts: m.Attempts, Kind: m.Kind, CreatedAt: m.CreatedAt, SentAt: m.SentAt, Raw: string(m.Raw)}
			if j.To == nil {
				j.To = []string{}
			}
			if m.State == store.OutboxQueued {
				next := m.NextAttemptAt
				j.NextAt = &next
			}
			if m.LastError != "" {
				e := m.LastError
				j.LastError = &e
			}
			out = append(out, j)
		}
		return writeJSON(stdout, out)
	}
	w := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tTICKET\tKIND\tSTATE\tATTEMPTS\tTO\tSUBJECT\tLAST ERROR")
	for _, m := range rows {
		ticket := "-"
		if m.TicketID != nil {
			ticket = strconv.FormatInt(*m.TicketID, 10)
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", m.ID, ticket, m.Kind, m.State, m.Attempts,
			strings.Join(m.RcptTo, ","), oneLine(m.Subject, 60), oneLine(m.LastError, 80))
	}
	return w.Flush()
}

// outboxRetry puts failed mail back in the queue for delivery now; a
// running daemon picks it up within its poll interval.
func outboxRetry(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("outbox retry", "ID... --db PATH", "Queues failed outbound mail for delivery again.")
	db := fs.String("db", "", "database `PATH`")
	cfgPath := fs.String("config", "", "configuration `FILE`")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return fmt.Errorf("%w: outbox retry ID... --db PATH", errUsage)
	}
	var ids []int64
	for _, p := range pos {
		id, err := strconv.ParseInt(p, 10, 64)
		if err != nil || id <= 0 {
			return fmt.Errorf("%w: %q is not an outbox id", errUsage, p)
		}
		ids = append(ids, id)
	}
	st, err := openStore(ctx, *db, *cfgPath)
	if err != nil {
		return err
	}
	defer st.Close()
	err = st.Write(ctx, func(tx *store.Tx) error {
		for _, id := range ids {
			if err := tx.RequeueOutbox(id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range ids {
		fmt.Fprintf(stdout, "outbox %d queued for delivery\n", id)
	}
	return nil
}
