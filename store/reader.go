package store

import (
	"database/sql"
	"fmt"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// readerDriver is the SQLite driver of the read pool. Its connections
// map the database file into memory (readerMmapSize): a page that a
// read needs is then read from the kernel's page cache in place, shared
// by every reader connection, instead of being copied by a pread into
// each connection's own page cache. On a database larger than that
// cache (100,000 tickets are 240 MB), random ticket reads through the
// API spent most of SQLite's time in those copies.
const readerDriver = "sqlite3_deskmail_reader"

// readerMmapSize is how much of the database file a reader maps: past
// it, SQLite reads pages as before. Mapped pages are the kernel's page
// cache, not deskmail's heap; they show in the process's resident size
// as shared file pages, which the kernel reclaims under pressure.
const readerMmapSize = 1 << 30

func init() {
	sql.Register(readerDriver, &sqlite3.SQLiteDriver{
		ConnectHook: func(c *sqlite3.SQLiteConn) error {
			_, err := c.Exec(fmt.Sprintf("PRAGMA mmap_size=%d", readerMmapSize), nil)
			return err
		},
	})
}
