package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/deskmail/deskmail/store"
)

// runContacts lists contacts and clears bouncing flags:
//
//	deskmail contacts list [--bouncing] [--json] --db PATH|--config FILE
//	deskmail contacts unflag ADDRESS --db PATH|--config FILE
func runContacts(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return runGroup(ctx, "contacts", []subcommand{
		{"list", "contacts list --db PATH [--bouncing] [--json]   contacts; --bouncing: who is flagged and why", func(ctx context.Context, args []string, _ io.Reader, stdout, _ io.Writer) error {
			return contactsList(ctx, args, stdout)
		}},
		{"unflag", "contacts unflag ADDRESS --db PATH   clear an address's bouncing flag", func(ctx context.Context, args []string, _ io.Reader, stdout, _ io.Writer) error {
			return contactsUnflag(ctx, args, stdout)
		}},
	}, args, stdin, stdout, stderr)
}

// contactLine is one contact as `contacts list --json` prints it: the
// stored contact and, when a delivery report flagged it, that report.
type contactLine struct {
	store.Contact
	// BounceReport is the report that set the flag (null when none
	// did, or when the relay refused the address itself).
	BounceReport *store.Bounce `json:"bounce_report"`
}

func contactsList(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("contacts list", "--db PATH [--bouncing] [--json]",
		"Lists contacts. With --bouncing, only those flagged bouncing, with when, the status code and the delivery report or relay refusal that flagged them.")
	db := fs.String("db", "", "database `PATH`")
	cfgPath := fs.String("config", "", "configuration `FILE`")
	asJSON := fs.Bool("json", false, "print JSON")
	bouncing := fs.Bool("bouncing", false, "only contacts flagged bouncing")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	st, err := openStore(ctx, *db, *cfgPath)
	if err != nil {
		return err
	}
	defer st.Close()
	list := []contactLine{}
	if err := st.Read(ctx, func(tx *store.Tx) error {
		var cs []store.Contact
		var err error
		if *bouncing {
			cs, err = tx.BouncingContacts()
		} else {
			cs, err = tx.Contacts(0, -1)
		}
		if err != nil {
			return err
		}
		for _, c := range cs {
			l := contactLine{Contact: c}
			if c.BounceID != nil {
				b, err := tx.BounceByID(*c.BounceID)
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
				l.BounceReport = b
			}
			list = append(list, l)
		}
		return nil
	}); err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, list)
	}
	if len(list) == 0 {
		if *bouncing {
			fmt.Fprintln(stdout, "no contact is flagged bouncing")
		} else {
			fmt.Fprintln(stdout, "no contacts")
		}
		return nil
	}
	w := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	if *bouncing {
		fmt.Fprintln(w, "EMAIL\tFLAGGED\tSTATUS\tWHY")
		for _, c := range list {
			status := c.BounceStatus
			if status == "" {
				status = "-"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", c.Email, fmtTime(c.BouncedAt), status, oneLine(c.BounceReason, 100))
		}
		return w.Flush()
	}
	fmt.Fprintln(w, "ID\tEMAIL\tNAME\tBOUNCING")
	for _, c := range list {
		b := "no"
		if c.Bouncing {
			b = "yes since " + fmtTime(c.BouncedAt)
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\n", c.ID, c.Email, c.Name, b)
	}
	return w.Flush()
}

func contactsUnflag(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("contacts unflag", "ADDRESS --db PATH",
		"Clears an address's bouncing flag, so that mail is sent to it again.")
	db := fs.String("db", "", "database `PATH`")
	cfgPath := fs.String("config", "", "configuration `FILE`")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || !strings.Contains(pos[0], "@") {
		return fmt.Errorf("%w: contacts unflag ADDRESS", errUsage)
	}
	addr := strings.ToLower(strings.TrimSpace(pos[0]))
	st, err := openStore(ctx, *db, *cfgPath)
	if err != nil {
		return err
	}
	defer st.Close()
	var was *store.Contact
	if err := st.Write(ctx, func(tx *store.Tx) error {
		was, err = tx.ClearBouncing(addr)
		return err
	}); err != nil {
		return err
	}
	switch {
	case was == nil:
		return fmt.Errorf("no contact %s", addr)
	case !was.Bouncing:
		fmt.Fprintf(stdout, "%s was not flagged bouncing\n", addr)
	default:
		fmt.Fprintf(stdout, "%s: bouncing flag cleared (it was: %s)\n", addr, oneLine(was.BounceReason, 200))
	}
	return nil
}
