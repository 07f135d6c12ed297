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
	"strings"
	"syscall"

	// Its init sets the process's P count and thread for `deskmail
	// ingest` (see the package).
	"github.com/deskmail/deskmail/internal/oneshot"
)

// command is one subcommand: it reads its own arguments and writes to
// the given streams.
type command struct {
	name  string
	usage string
	run   func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

// commands is every subcommand. usage is the synopsis after "deskmail",
// then three spaces, then what it does (`deskmail help` aligns them).
// A command's -h/--help comes from its flag set (newFlags) or, for a
// group, from runGroup; TestHelpEveryCommand runs every one listed here.
func commands() []command {
	return []command{
		{"parse", "parse FILE|-   print one parsed message as JSON", runParse},
		{"ingest", "ingest --db PATH [--config FILE] [FILE...|-]   ingest mail into tickets", runIngest},
		{"import", "import --config FILE|--db PATH [--channel NAME [--imap] [--folder F]...] [--sla-clocks] [--json] [SOURCE...]   import a history (mbox, Maildir, .eml files, IMAP folders) without mailing anyone", runImport},
		{"tickets", "tickets list|show|update ...   read and change tickets", runTickets},
		{"outbox", "outbox list|retry ...   queued and sent outbound mail", runOutbox},
		{"agents", "agents list|add|key ...   agents and their API keys", runAgents},
		{"contacts", "contacts list|unflag ...   contacts and their bouncing flags", runContacts},
		{"serve", "serve [--config FILE] [--smtp-listen ADDR] [--http-listen ADDR]   run the daemon (SIGHUP reloads)", runServe},
		{"check-config", "check-config FILE   validate a configuration file", runCheckConfig},
		{"status", "status [--config FILE] [--db PATH] [--json]   channel health, outbox, failures", runStatus},
		{"backup", "backup --config FILE|--db PATH [--json] DEST   consistent copy of the database, while running", runBackup},
		{"channels", "channels test NAME --config FILE   check an IMAP channel's mailbox", runChannels},
		{"migrate", "migrate --from PATH.db --to postgres://... [--json]   copy a SQLite installation into PostgreSQL, verified", runMigrate},
		{"version", "version [--json] [--db PATH|URL|--config FILE]   version, Go version, database schema and store", runVersion},
	}
}

// printCommands prints usage lines ("SYNOPSIS   what it does"): the
// synopsis, and what it does indented below it.
func printCommands(w io.Writer, lines []string) {
	for _, l := range lines {
		syn, what, _ := strings.Cut(l, "   ")
		fmt.Fprintf(w, "  deskmail %s\n", syn)
		if what = strings.TrimSpace(what); what != "" {
			fmt.Fprintf(w, "      %s\n", what)
		}
	}
}

// errUsage marks an error caused by wrong arguments (exit status 2).
var errUsage = errors.New("usage")

// processOwner marks a context whose command runs as the whole
// process (main), not inside a test: it may then tune process-wide
// settings such as GOMAXPROCS.
type processOwner struct{}

// ownsProcess reports whether ctx comes from main.
func ownsProcess(ctx context.Context) bool { return ctx.Value(processOwner{}) != nil }

// stopOnSignal returns a context that SIGINT or SIGTERM cancels.
// Asking for signals costs a process about 0.7 ms of CPU (os/signal
// starts two goroutines, one of them on a thread of its own, and main's
// goroutine meets each of them twice): `deskmail ingest` of one
// message, once per mail behind an MTA, goes without, and a signal then
// ends it as it would any program — before exit status 0, so nothing
// was acknowledged, and the one transaction commits whole or not at all.
func stopOnSignal(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

func main() {
	ctx, stop := context.WithCancel(context.WithValue(context.Background(), processOwner{}, true))
	if !oneshot.Ingest(os.Args) {
		// SIGINT and SIGTERM cancel the command's context: it stops at
		// its next step and exits through its own error. deskmail ingest
		// asks for them itself, for a batch only (see stopOnSignal).
		ctx, stop = stopOnSignal(ctx)
	}
	stopProfile := startCPUProfile()
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stopProfile()
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	if isHelp(args[0]) {
		if len(args) == 1 {
			usage(stdout)
			return 0
		}
		// deskmail help CMD [SUB] is CMD [SUB] --help.
		args = append(args[1:], "--help")
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdin, stdout, stderr)
		var ue *usageError
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			if errors.As(err, &ue) {
				ue.usage(stdout)
			} else {
				syn, _, _ := strings.Cut(c.usage, "   ")
				fmt.Fprintf(stdout, "usage: deskmail %s\n", syn)
			}
			return 0
		case errors.Is(err, errUsage):
			fmt.Fprintf(stderr, "deskmail %s: %v\n", c.name, err)
			if errors.As(err, &ue) {
				ue.usage(stderr)
			}
			return 2
		case errors.Is(err, errReported):
			return exitStatus(err, 1)
		default:
			fmt.Fprintf(stderr, "deskmail %s: %v\n", c.name, err)
			return exitStatus(err, 1)
		}
	}
	fmt.Fprintf(stderr, "deskmail: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

// isHelp reports whether an argument asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
}

// usageError is a usage mistake (or a request for help: flag.ErrHelp)
// that knows how to print the usage of the command it concerns. run
// prints it after the error (on stderr, exit status 2) or alone for
// help (on stdout, exit status 0).
type usageError struct {
	usage func(w io.Writer)
	err   error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// newFlags makes the flag set of a command or subcommand. name is
// what follows "deskmail" ("tickets show"), synopsis its arguments
// ("ID --db PATH [--json]") and about what it does, in one sentence;
// -h/--help prints the three and the flags (see parseFlags). Every
// command's flags go through here so that its help is complete.
func newFlags(name, synopsis, about string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: deskmail %s %s\n", name, synopsis)
		if about != "" {
			fmt.Fprintf(w, "\n%s\n", about)
		}
		has := false
		fs.VisitAll(func(*flag.Flag) { has = true })
		if has {
			fmt.Fprintln(w, "\nflags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// subcommand is one verb of a command group (`tickets show`).
type subcommand struct {
	name string
	// usage is the line `deskmail help` would show, after "deskmail ".
	usage string
	run   func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

// runGroup dispatches a command group (`deskmail tickets list|show|…`)
// to its subcommand. No subcommand, or an unknown one, is a usage
// error listing the group's subcommands; -h/--help/help lists them.
func runGroup(ctx context.Context, group string, subs []subcommand, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	names := make([]string, len(subs))
	for i, s := range subs {
		names[i] = s.name
	}
	help := func(w io.Writer) {
		fmt.Fprintf(w, "usage: deskmail %s %s ...\n\ncommands:\n", group, strings.Join(names, "|"))
		var lines []string
		for _, s := range subs {
			lines = append(lines, s.usage)
		}
		printCommands(w, lines)
		fmt.Fprintf(w, "\nrun deskmail %s COMMAND --help for its flags\n", group)
	}
	switch {
	case len(args) == 0:
		return &usageError{help, fmt.Errorf("%w: which %s command? (%s)", errUsage, group, strings.Join(names, ", "))}
	case isHelp(args[0]):
		return &usageError{help, flag.ErrHelp}
	}
	for _, s := range subs {
		if s.name == args[0] {
			return s.run(ctx, args[1:], stdin, stdout, stderr)
		}
	}
	return &usageError{help, fmt.Errorf("%w: unknown %s command %q (%s)", errUsage, group, args[0], strings.Join(names, ", "))}
}

// errReported means the command already told the user what failed.
var errReported = errors.New("reported")

// Exit statuses from sysexits.h, for MTAs that deliver through
// `deskmail ingest` (Postfix pipe, aliases): 75 makes them retry later.
const (
	exDataErr  = 65 // some input could not be used (deskmail import: failed messages)
	exNoInput  = 66 // an input file cannot be read
	exNoUser   = 67 // an envelope recipient is no support address: the MTA bounces
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

// usage lists every command (deskmail help).
func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: deskmail COMMAND [ARGS]")
	fmt.Fprintln(w, "\ncommands:")
	var lines []string
	for _, c := range commands() {
		lines = append(lines, c.usage)
	}
	printCommands(w, lines)
	fmt.Fprintln(w, "\nrun deskmail COMMAND --help (or deskmail help COMMAND) for its arguments and flags")
}

// parseFlags parses flags that may appear before, between or after
// positional arguments (`tickets show 3 --db x.db --json`), and returns
// the positional arguments in order. -h/--help and an unknown or
// malformed flag return a *usageError that prints fs's usage.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	printUsage := func(w io.Writer) {
		fs.SetOutput(w)
		fs.Usage()
		fs.SetOutput(io.Discard)
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, &usageError{printUsage, err}
			}
			return nil, &usageError{printUsage, fmt.Errorf("%w: %v", errUsage, err)}
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
