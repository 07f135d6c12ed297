package main

import (
	"context"
	"fmt"
	"io"
	goruntime "runtime"
	"runtime/debug"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/store"
)

// version overrides the version read from the build information; set
// it when building a release:
//
//	go build -ldflags "-X main.version=v1.4.0" ./cmd/deskmail
var version string

// versionInfo is what `deskmail version` prints.
type versionInfo struct {
	Version  string `json:"version"`
	Revision string `json:"revision"`
	Time     string `json:"time"`
	Modified bool   `json:"modified"`
	Go       string `json:"go"`
	Schema   int    `json:"schema_version"`
	// Stores are the kinds of database this binary speaks.
	Stores []string `json:"stores"`
	// Database, Store and DatabaseSchema describe the database named
	// by --db or --config (null without either).
	Database       *string `json:"database"`
	Store          *string `json:"store"`
	DatabaseSchema *int    `json:"database_schema_version"`
}

// buildVersion collects the version (the -X override, else the module
// version Go stamped into the binary), the VCS revision, the Go version
// and the database schema version this binary writes.
func buildVersion() versionInfo {
	v := versionInfo{Version: version, Go: goruntime.Version(), Schema: store.SchemaVersion(), Stores: []string{"sqlite", "postgresql"}}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v.Version == "" {
			v.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Revision = s.Value
			case "vcs.time":
				v.Time = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	if v.Version == "" {
		v.Version = "(devel)"
	}
	return v
}

// runVersion prints the version, the Go version and the schema version.
func runVersion(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("version", "[--json] [--db PATH|URL | --config FILE]",
		"Prints the version, the Go version and the database schema version; with --db or --config,\n"+
			"also the store (sqlite or postgresql) and the schema version that database is at\n"+
			"(read only: nothing is created or migrated).")
	asJSON := fs.Bool("json", false, "print JSON")
	db := fs.String("db", "", "database `PATH` or postgres:// URL to inspect")
	cfgPath := fs.String("config", "", "configuration `FILE` whose database to inspect")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}
	v := buildVersion()
	if *db != "" || *cfgPath != "" {
		cfg := config.Default()
		if *cfgPath != "" {
			if cfg, err = config.Load(*cfgPath); err != nil {
				return err
			}
		}
		if *db != "" {
			cfg.Database = *db
		}
		var opts store.Options
		if store.IsPostgres(cfg.Database) && !cfg.DatabasePassword.IsZero() {
			if opts.Password, err = cfg.DatabasePassword.Value(); err != nil {
				return fmt.Errorf("database_password: %w", err)
			}
		}
		kind, n, err := store.Inspect(ctx, cfg.Database, opts)
		if err != nil {
			return err
		}
		name := store.Redact(cfg.Database)
		v.Database, v.Store, v.DatabaseSchema = &name, &kind, &n
	}
	if *asJSON {
		return writeJSON(stdout, v)
	}
	fmt.Fprintf(stdout, "deskmail %s\n", v.Version)
	if v.Revision != "" {
		mod := ""
		if v.Modified {
			mod = " (modified)"
		}
		fmt.Fprintf(stdout, "revision %s %s%s\n", v.Revision, v.Time, mod)
	}
	fmt.Fprintf(stdout, "go %s\ndatabase schema %d\n", v.Go, v.Schema)
	if v.Store != nil {
		fmt.Fprintf(stdout, "store %s %s at schema %d\n", *v.Store, *v.Database, *v.DatabaseSchema)
	}
	return nil
}
