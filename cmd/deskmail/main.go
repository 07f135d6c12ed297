// Command deskmail is the email-to-ticket gateway: one binary whose
// subcommands parse mail, ingest it into tickets, show tickets and the
// outbox, and run the daemon. This package only wires the other
// packages together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one subcommand: it reads its own arguments and writes to
// the given streams.
type command struct {
	name  string
	usage string
	run   func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"parse", "parse FILE|-            print one parsed message as JSON", runParse},
		{"ingest", "ingest --db PATH [--config FILE] [FILE...|-]   ingest mail into tickets", runIngest},
		{"tickets", "tickets list|show|update ...   read and change tickets", runTickets},
		{"outbox", "outbox list --db PATH --json   list queued and sent mail", runOutbox},
		{"agents", "agents list|add|key EMAIL --db PATH [--config FILE]   agents and their API keys", runAgents},
		{"serve", "serve [--config FILE] [--smtp-listen ADDR] [--http-listen ADDR]   run the daemon (SIGHUP reloads)", runServe},
		{"check-config", "check-config FILE       validate a configuration file", runCheckConfig},
		{"status", "status [--config FILE] [--db PATH] [--json]   channel health, outbox, failures", runStatus},
		{"backup", "backup --db PATH DEST   consistent copy of the database, while running", runBackup},
		{"channels", "channels test NAME --config FILE   check an IMAP channel's mailbox", runChannels},
		{"version", "version [--json]        version, Go version and database schema", runVersion},
	}
}

// errUsage marks an error caused by wrong arguments (exit status 2).
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdin, stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			fmt.Fprintf(stderr, "deskmail %s: %v\n", c.name, err)
			return 2
		case errors.Is(err, errReported):
			return exitStatus(err, 1)
		default:
			fmt.Fprintf(stderr, "deskmail %s: %v\n", c.name, err)
			return exitStatus(err, 1)
		}
	}
	fmt.Fprintf(stderr, "deskmail: unknown command %q (run deskmail help)\n", args[0])
	return 2
}

// errReported means the command already told the user what failed.
var errReported = errors.New("reported")

// Exit statuses from sysexits.h, for MTAs that deliver through
// `deskmail ingest` (Postfix pipe, aliases): 75 makes them retry later.
const (
	exNoInput  = 66 // an input file cannot be read
	exTempFail = 75 // the store or the configuration is unusable: try again later
	exConfig   = 78 // an invalid configuration (commands MTAs do not run)
)

// exitError carries a specific exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withStatus wraps err so that the process exits with code.
func withStatus(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

func exitStatus(err error, def int) int {
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return def
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: deskmail COMMAND [ARGS]")
	for _, c := range commands() {
		fmt.Fprintf(w, "  deskmail %s\n", c.usage)
	}
}

// parseFlags parses flags that may appear before, between or after
// positional arguments (`tickets show 3 --db x.db --json`), and returns
// the positional arguments in order.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
