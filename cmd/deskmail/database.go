package main

import (
	"context"
	"fmt"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/store"
)

// openDatabase opens the configuration's database (a SQLite file or a
// PostgreSQL URL) with opts; a PostgreSQL password comes from the URL,
// database_password, or PostgreSQL's PGPASSWORD/PGPASSFILE.
func openDatabase(ctx context.Context, cfg *config.Config, opts store.Options) (*store.Store, error) {
	if store.IsPostgres(cfg.Database) && !cfg.DatabasePassword.IsZero() {
		pw, err := cfg.DatabasePassword.Value()
		if err != nil {
			return nil, fmt.Errorf("database_password: %w", err)
		}
		opts.Password = pw
	}
	return store.Open(ctx, cfg.Database, opts)
}
