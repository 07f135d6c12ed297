package main

import (
	"context"
	"fmt"
	"io"
	goruntime "runtime"
	"runtime/debug"

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
}

// buildVersion collects the version (the -X override, else the module
// version Go stamped into the binary), the VCS revision, the Go version
// and the database schema version this binary writes.
func buildVersion() versionInfo {
	v := versionInfo{Version: version, Go: goruntime.Version(), Schema: store.SchemaVersion()}
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
	fs := newFlags("version", "[--json]",
		"Prints the version, the Go version and the database schema version.")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}
	v := buildVersion()
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
	return nil
}
