//go:build !linux

package store

import "github.com/jackc/pgx/v5/pgconn"

// pgBlockingDial returns dial: blocking sockets are used on Linux only
// (see pgsocket_linux.go).
func pgBlockingDial(dial pgconn.DialFunc) pgconn.DialFunc { return dial }
