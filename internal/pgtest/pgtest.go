// Package pgtest runs a throw-away PostgreSQL cluster for tests: initdb
// and pg_ctl under a temporary directory, listening on a loopback port,
// run as an unprivileged user (initdb refuses root: as root the cluster
// runs as nobody). A test package starts one cluster in its TestMain and
// every test gets a fresh schema of it (URL), so tests stay fast and
// independent.
//
// Where the binaries are: DESKMAIL_PG_BIN, else the newest
// /usr/lib/postgresql/*/bin (Debian's postgresql package), else pg_ctl
// on PATH. DESKMAIL_PG=1 makes a missing PostgreSQL a test failure (CI
// sets it); without it, tests that can run on SQLite alone do so and
// say that PostgreSQL was not found.
package pgtest

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// Required reports whether DESKMAIL_PG=1 demands PostgreSQL.
func Required() bool { return os.Getenv("DESKMAIL_PG") == "1" }

// Bin finds the directory of initdb, pg_ctl and postgres.
func Bin() (string, error) {
	if d := os.Getenv("DESKMAIL_PG_BIN"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err != nil {
			return "", fmt.Errorf("DESKMAIL_PG_BIN=%s: %w", d, err)
		}
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if _, err := os.Stat(filepath.Join(filepath.Dir(p), "initdb")); err == nil {
			return filepath.Dir(p), nil
		}
	}
	return "", errors.New("PostgreSQL not found (apt-get install postgresql, or set DESKMAIL_PG_BIN to the directory of initdb)")
}

func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// Options tunes a cluster.
type Options struct {
	// Durable keeps fsync on (benchmarks); tests run with fsync off,
	// which changes nothing they can observe.
	Durable bool
	// Settings are extra postgres -c settings.
	Settings map[string]string
}

// Cluster is one throw-away PostgreSQL cluster, started on first use.
type Cluster struct {
	opts Options

	once  sync.Once
	err   error
	dir   string
	bin   string
	port  int
	cred  *syscall.Credential
	admin *sql.DB
	// keeper runs the cluster until keeperIn closes (keeperScript).
	keeper   *exec.Cmd
	keeperIn io.WriteCloser

	mu sync.Mutex
	n  int
}

// New returns a cluster that starts on the first call to URL.
func New(opts Options) *Cluster { return &Cluster{opts: opts} }

// Available reports whether the cluster runs (starting it if needed).
// When PostgreSQL is missing it fails t if Required, else logs why and
// returns false.
func (c *Cluster) Available(t testing.TB) bool {
	t.Helper()
	if err := c.start(); err != nil {
		if Required() || !errors.Is(err, errNotInstalled) {
			t.Fatalf("PostgreSQL: %v", err)
		}
		t.Logf("PostgreSQL store not tested: %v (DESKMAIL_PG=1 makes this a failure)", err)
		return false
	}
	return true
}

// URL returns the URL of a fresh, empty schema of the cluster (its
// search_path), for one test. It fails t when the cluster cannot run.
func (c *Cluster) URL(t testing.TB) string {
	t.Helper()
	if err := c.start(); err != nil {
		t.Fatalf("PostgreSQL: %v", err)
	}
	u, err := c.NewSchema()
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// NewSchema creates a fresh schema and returns its URL.
func (c *Cluster) NewSchema() (string, error) {
	if err := c.start(); err != nil {
		return "", err
	}
	c.mu.Lock()
	c.n++
	name := fmt.Sprintf("t%d", c.n)
	c.mu.Unlock()
	if _, err := c.admin.Exec("CREATE SCHEMA " + name); err != nil {
		return "", fmt.Errorf("pgtest: create schema: %w", err)
	}
	return c.url("postgres") + "&search_path=" + name + ",public", nil
}

// NewDatabase creates a fresh database and returns its URL (for what
// needs a database of its own, such as pg_dump).
func (c *Cluster) NewDatabase() (string, error) {
	if err := c.start(); err != nil {
		return "", err
	}
	c.mu.Lock()
	c.n++
	name := fmt.Sprintf("db%d", c.n)
	c.mu.Unlock()
	if _, err := c.admin.Exec("CREATE DATABASE " + name); err != nil {
		return "", fmt.Errorf("pgtest: create database: %w", err)
	}
	return c.url(name), nil
}

// Bin is the directory of the cluster's PostgreSQL binaries (pg_dump…).
func (c *Cluster) Bin() string { return c.bin }

func (c *Cluster) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

var errNotInstalled = errors.New("not installed")

func (c *Cluster) start() error {
	c.once.Do(func() { c.err = c.doStart() })
	return c.err
}

func (c *Cluster) doStart() error {
	bin, err := Bin()
	if err != nil {
		return fmt.Errorf("%w: %w", errNotInstalled, err)
	}
	c.bin = bin
	c.dir, err = os.MkdirTemp("", "deskmail-pg-")
	if err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		// initdb refuses to run as root: the cluster belongs to nobody.
		u, err := user.Lookup("nobody")
		if err != nil {
			return fmt.Errorf("pgtest: running as root and no user nobody: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(c.dir, uid, gid); err != nil {
			return err
		}
	}
	data := filepath.Join(c.dir, "data")
	if out, err := c.run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-locale", "-E", "UTF8", "--no-sync"); err != nil {
		return fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	settings := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": c.dir,
		"max_connections":         "300",
		"synchronous_commit":      "on",
		"shared_buffers":          "64MB",
	}
	if !c.opts.Durable {
		settings["fsync"] = "off"
		settings["full_page_writes"] = "off"
	}
	for k, v := range c.opts.Settings {
		settings[k] = v
	}
	var last error
	for range 5 {
		c.port, err = freePort()
		if err != nil {
			return err
		}
		settings["port"] = strconv.Itoa(c.port)
		var o []string
		for k, v := range settings {
			o = append(o, fmt.Sprintf("-c %s=%s", k, v))
		}
		err := c.startKeeper(data, strings.Join(o, " "))
		if err == nil {
			last = nil
			break
		}
		log, _ := os.ReadFile(filepath.Join(c.dir, "log"))
		last = fmt.Errorf("pgtest: pg_ctl start: %w\n%s", err, log)
	}
	if last != nil {
		return last
	}
	c.admin, err = sql.Open("pgx", c.url("postgres"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.admin.ExecContext(ctx, "CREATE EXTENSION IF NOT EXISTS citext SCHEMA public"); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	return nil
}

// keeperScript starts the cluster, says so, and stops it when its
// standard input closes: when Stop closes it, and also when the test
// process dies (a timeout panic runs no cleanup), so no cluster
// outlives its tests.
const keeperScript = `"$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 -o "$PG_OPTS" start >/dev/null || exit 1
echo ready
cat >/dev/null
"$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w stop >/dev/null`

func (c *Cluster) startKeeper(data, opts string) error {
	cmd := exec.Command("/bin/sh", "-c", keeperScript)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "PG_BIN="+c.bin, "PG_DATA="+data, "PG_LOG="+filepath.Join(c.dir, "log"), "PG_OPTS="+opts)
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	line := make([]byte, 6)
	if _, err := io.ReadFull(out, line); err != nil || string(line) != "ready\n" {
		in.Close()
		werr := cmd.Wait()
		return fmt.Errorf("cluster did not start (%v, %v)", err, werr)
	}
	c.keeper, c.keeperIn = cmd, in
	return nil
}

// run runs one PostgreSQL program as the cluster's user.
func (c *Cluster) run(prog string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(c.bin, prog), args...)
	cmd.Dir = c.dir
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	return cmd.CombinedOutput()
}

// freePort finds a loopback port nobody listens on (PostgreSQL cannot
// be given port 0; a clash makes start try another).
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Stop stops the cluster (if it started) and removes its directory.
func (c *Cluster) Stop() {
	if c.admin != nil {
		c.admin.Close()
	}
	if c.dir == "" {
		return
	}
	if c.keeper != nil {
		c.keeperIn.Close()
		c.keeper.Wait()
	}
	os.RemoveAll(c.dir)
}

// CPU is the CPU time (user+system) the cluster's server processes
// have used so far: the postmaster with the backends it reaped, and the
// backends still running (/proc, Linux).
func (c *Cluster) CPU() (time.Duration, error) {
	pm, err := c.postmaster()
	if err != nil {
		return 0, err
	}
	total, _, err := procTimes(pm, true)
	if err != nil {
		return 0, err
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, _ := strconv.Atoi(filepath.Base(p))
		if t, ppid, err := procTimes(pid, false); err == nil && ppid == pm {
			total += t
		}
	}
	return total, nil
}

// Settle waits until the cluster runs at most n server processes (the
// count Processes gave before clients connected), so that the backends
// of clients that have disconnected have exited and been reaped: until
// the postmaster reaps a backend, CPU counts neither it nor its time.
// It gives up after timeout.
func (c *Cluster) Settle(n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		m, err := c.Processes()
		if err != nil || m <= n {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgtest: %d server processes after %v, want at most %d: %s", m, timeout, n, strings.Join(c.processNames(), "; "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Processes counts the cluster's server processes: the postmaster's
// children, exited ones not yet reaped included (/proc, Linux), except
// autovacuum workers. Those come and go on the server's own schedule
// (a bulk load starts one that may run for many seconds); CPU counts
// them whether they are running or reaped, so Settle need not wait.
func (c *Cluster) Processes() (int, error) {
	pm, err := c.postmaster()
	if err != nil {
		return 0, err
	}
	n := 0
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, _ := strconv.Atoi(filepath.Base(p))
		if _, ppid, err := procTimes(pid, false); err == nil && ppid == pm {
			cmdline, _ := os.ReadFile(filepath.Join(p, "cmdline"))
			if !bytes.Contains(cmdline, []byte("autovacuum worker")) {
				n++
			}
		}
	}
	return n, nil
}

// processNames lists the command lines of the cluster's server
// processes (PostgreSQL names each for its role: "postgres: autovacuum
// worker", "postgres: user db [local] idle"…), for error messages.
func (c *Cluster) processNames() []string {
	pm, err := c.postmaster()
	if err != nil {
		return nil
	}
	var names []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, _ := strconv.Atoi(filepath.Base(p))
		if _, ppid, err := procTimes(pid, false); err == nil && ppid == pm {
			b, _ := os.ReadFile(filepath.Join(p, "cmdline"))
			names = append(names, strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " ")))
		}
	}
	return names
}

func (c *Cluster) postmaster() (int, error) {
	b, err := os.ReadFile(filepath.Join(c.dir, "data", "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	pm, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		return 0, fmt.Errorf("pgtest: postmaster.pid: %w", err)
	}
	return pm, nil
}

// procTimes reads a process's utime+stime (and with children, its
// reaped children's too) and its parent pid.
func procTimes(pid int, children bool) (time.Duration, int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	i := strings.LastIndexByte(string(data), ')')
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 15 {
		return 0, 0, fmt.Errorf("pgtest: /proc/%d/stat: short", pid)
	}
	ppid, _ := strconv.Atoi(f[1])
	var ticks int64
	n := 13
	if children {
		n = 15
	}
	for _, v := range f[11:n] {
		x, _ := strconv.ParseInt(v, 10, 64)
		ticks += x
	}
	return time.Duration(ticks) * 10 * time.Millisecond, ppid, nil
}
