package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"golang.org/x/term"

	"github.com/deskmail/deskmail/console"
	"github.com/deskmail/deskmail/store"
)

// runAgents manages agents and their API keys:
//
//	deskmail agents list --db PATH [--config FILE] [--json]
//	deskmail agents add EMAIL [--name NAME] [--role agent|admin] --db PATH [--config FILE]
//	deskmail agents key EMAIL --db PATH [--config FILE]
//	deskmail agents password EMAIL --db PATH [--config FILE]
//	deskmail agents deactivate|activate EMAIL --db PATH [--config FILE]
//
// `key` prints a new random API key once; only its SHA-256 hash is
// stored, so a lost key cannot be shown again (make a new one).
func runAgents(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	sub := func(verb, synopsis, about string) subcommand {
		return subcommand{verb, "agents " + verb + " " + synopsis, func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
			return agents(ctx, verb, newFlags("agents "+verb, strings.SplitN(synopsis, "   ", 2)[0], about), args, stdin, stdout, stderr)
		}}
	}
	return runGroup(ctx, "agents", []subcommand{
		sub("list", "--db PATH [--config FILE] [--json]   the agents and their roles", "Lists the agents of the database (and of the configuration, when given)."),
		sub("add", "EMAIL [--name NAME] [--role agent|admin] --db PATH [--config FILE]   add an agent",
			"Adds an agent to the database (created if missing), so that it can get an API key."),
		sub("key", "EMAIL --db PATH [--config FILE]   print a new API key for an agent",
			"Prints a new random API key for an agent, once: only its hash is stored. The agent must exist (agents add, or agents: in the configuration)."),
		sub("password", "EMAIL --db PATH [--config FILE]   set an agent's web console password",
			"Sets the password an agent signs in to the web console with: read from the terminal without echo (twice), or one line from standard input. Only its argon2id hash is stored; the agent's console sessions end."),
		sub("deactivate", "EMAIL --db PATH [--config FILE]   stop an agent's API keys and console sessions",
			"Deactivates an agent: its API keys stop working (within 10 seconds) and its web console sessions end at once. The configuration does not bring it back; agents activate does."),
		sub("activate", "EMAIL --db PATH [--config FILE]   activate a deactivated agent", "Activates an agent again."),
	}, args, stdin, stdout, stderr)
}

// agents runs one agents subcommand (verb) with its flag set.
func agents(ctx context.Context, verb string, fs *flag.FlagSet, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	db := fs.String("db", "", "database `PATH`")
	cfgPath := fs.String("config", "", "configuration `FILE`")
	var name, role *string
	asJSON := new(bool)
	if verb == "list" {
		asJSON = fs.Bool("json", false, "print JSON")
	}
	if verb == "add" {
		name = fs.String("name", "", "display `NAME`")
		role = fs.String("role", "agent", "`ROLE`: agent or admin")
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if *db == "" && *cfgPath == "" {
		return fmt.Errorf("%w: --db PATH or --config FILE is required", errUsage)
	}
	if verb != "add" {
		if err := requireDatabase(*db, *cfgPath); err != nil {
			return err
		}
	}
	// The runtime syncs the configured agents into the database first,
	// so a key can be made for an agent that is only in the config.
	rt, err := openRuntime(ctx, *cfgPath, *db, false, stderrLogger())
	if err != nil {
		return err
	}
	defer rt.Close()
	switch verb {
	case "list":
		var agents []store.Agent
		if err := rt.st.Read(ctx, func(tx *store.Tx) error {
			var err error
			agents, err = tx.Agents()
			return err
		}); err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(stdout, append([]store.Agent{}, agents...))
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tEMAIL\tNAME\tROLE\tACTIVE")
		for _, a := range agents {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%v\n", a.ID, a.Email, a.Name, a.Role, a.Active)
		}
		return tw.Flush()
	case "add":
		if len(pos) != 1 || !strings.Contains(pos[0], "@") {
			return fmt.Errorf("%w: agents add EMAIL [--name NAME] [--role agent|admin]", errUsage)
		}
		if *role != "agent" && *role != "admin" {
			return fmt.Errorf("%w: --role must be agent or admin", errUsage)
		}
		var id int64
		err := rt.st.Write(ctx, func(tx *store.Tx) error {
			var err error
			id, err = tx.PutAgent(store.Agent{Email: strings.ToLower(pos[0]), Name: *name, Role: *role, Active: true})
			return err
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "agent %d %s (%s)\n", id, strings.ToLower(pos[0]), *role)
		return nil
	case "key":
		if len(pos) != 1 {
			return fmt.Errorf("%w: agents key EMAIL", errUsage)
		}
		key, err := newAPIKey()
		if err != nil {
			return err
		}
		err = rt.st.Write(ctx, func(tx *store.Tx) error {
			a, err := tx.AgentByEmail(strings.ToLower(strings.TrimSpace(pos[0])))
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("no active agent %s: add it under agents: in the configuration or with deskmail agents add", pos[0])
			}
			if err != nil {
				return err
			}
			return tx.AddAPIKey(a.ID, key)
		})
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, key)
		return nil
	case "password":
		if len(pos) != 1 {
			return fmt.Errorf("%w: agents password EMAIL", errUsage)
		}
		email := strings.ToLower(strings.TrimSpace(pos[0]))
		if err := rt.st.Read(ctx, func(tx *store.Tx) error {
			_, err := tx.AgentByEmail(email)
			return err
		}); errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no active agent %s: add it under agents: in the configuration or with deskmail agents add", pos[0])
		} else if err != nil {
			return err
		}
		password, err := readPassword(stdin, stderr, email)
		if err != nil {
			return err
		}
		hash, err := console.HashPassword(password)
		if err != nil {
			return err
		}
		if err := rt.st.Write(ctx, func(tx *store.Tx) error {
			_, err := tx.SetAgentPassword(email, hash)
			return err
		}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "password set for %s\n", email)
		return nil
	case "deactivate", "activate":
		if len(pos) != 1 {
			return fmt.Errorf("%w: agents %s EMAIL", errUsage, verb)
		}
		var a *store.Agent
		err := rt.st.Write(ctx, func(tx *store.Tx) error {
			var err error
			a, err = tx.SetAgentActive(strings.ToLower(strings.TrimSpace(pos[0])), verb == "activate")
			return err
		})
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no agent %s", pos[0])
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "agent %d %s %sd\n", a.ID, a.Email, verb)
		return nil
	}
	return fmt.Errorf("%w: unknown agents command %q (list, add, key, password, deactivate, activate)", errUsage, verb)
}

// readPassword reads a new password: from a terminal without echo,
// asked twice; otherwise the first line of stdin.
func readPassword(stdin io.Reader, stderr io.Writer, email string) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(stderr, "New console password for %s: ", email)
		p1, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		fmt.Fprint(stderr, "Again: ")
		p2, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if string(p1) != string(p2) {
			return "", errors.New("the two passwords differ; nothing changed")
		}
		return string(p1), nil
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("no password on standard input (give it as one line)")
	}
	return line, nil
}

// newAPIKey returns a random key: 32 bytes from crypto/rand, URL-safe
// base64 (no ':' so it can be a Basic user name), with a prefix that
// makes it recognizable in secret scanners.
func newAPIKey() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random key: %w", err)
	}
	return "dmk_" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}
