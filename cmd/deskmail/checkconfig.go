package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/deskmail/deskmail/config"
)

// runCheckConfig validates a configuration file and reports every
// problem at once, one per line as FILE:LINE: yaml.path: what is wrong,
// sorted by line — the same lines `serve` prints when it refuses to
// start and logs when it refuses a reload.
func runCheckConfig(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("check-config", "FILE",
		"Validates a configuration file: prints every problem as FILE:LINE: yaml.path: what is wrong (exit status 1), or a one-line summary (exit status 0).")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return &usageError{func(w io.Writer) { fs.SetOutput(w); fs.Usage() }, fmt.Errorf("%w: want exactly one FILE", errUsage)}
	}
	cfg, err := config.Load(pos[0])
	if printProblems(stderr, pos[0], err) {
		return errReported
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok (%d channel(s), %d pipeline(s), %d agent(s))\n", pos[0], len(cfg.Channels), len(cfg.Pipelines), len(cfg.Agents))
	return nil
}

// printProblems prints the configuration problems in err, if it holds
// any, one per line and then their count; it reports whether it did.
func printProblems(w io.Writer, file string, err error) bool {
	var ps config.Problems
	if !errors.As(err, &ps) {
		return false
	}
	for _, p := range ps {
		fmt.Fprintln(w, p.String())
	}
	fmt.Fprintf(w, "%s: %d problem(s)\n", file, len(ps))
	return true
}
