package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/deskmail/deskmail/config"
)

// runCheckConfig validates a configuration file and reports every
// problem at once, one per line as FILE:LINE: message.
func runCheckConfig(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) != 1 {
		return fmt.Errorf("%w: check-config FILE", errUsage)
	}
	cfg, err := config.Load(args[0])
	var ps config.Problems
	if errors.As(err, &ps) {
		for _, p := range ps {
			fmt.Fprintln(stderr, p.String())
		}
		fmt.Fprintf(stderr, "%s: %d problem(s)\n", args[0], len(ps))
		return errReported
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok (%d channel(s), %d pipeline(s), %d agent(s))\n", args[0], len(cfg.Channels), len(cfg.Pipelines), len(cfg.Agents))
	return nil
}
