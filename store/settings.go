package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
)

// Setting returns a stored setting ("" and false when unset).
func (t *Tx) Setting(key string) (string, bool, error) {
	var v string
	err := t.row(`SELECT value FROM settings WHERE key=?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("store: setting %s: %w", key, err)
	}
	return v, true, nil
}

// PutSetting stores a setting.
func (t *Tx) PutSetting(key, value string) error {
	if _, err := t.exec(`INSERT INTO settings(key, value) VALUES (?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value`, key, value); err != nil {
		return fmt.Errorf("store: setting %s: %w", key, err)
	}
	return nil
}

// Secret returns the database's token secret, generating and storing
// a random one on first use, so that reply tokens stay valid across
// restarts and between `deskmail serve` and `deskmail ingest` on the
// same database when no secret is configured.
func (s *Store) Secret(ctx context.Context) ([]byte, error) {
	var secret string
	// Read first: only the very first start writes (and syncs) it.
	err := s.Read(ctx, func(tx *Tx) error {
		v, _, err := tx.Setting("token_secret")
		secret = v
		return err
	})
	if err != nil {
		return nil, err
	}
	if secret != "" {
		return []byte(secret), nil
	}
	err = s.Write(ctx, func(tx *Tx) error {
		v, ok, err := tx.Setting("token_secret")
		if err != nil {
			return err
		}
		if ok && v != "" {
			secret = v
			return nil
		}
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return fmt.Errorf("store: generate secret: %w", err)
		}
		secret = hex.EncodeToString(b)
		return tx.PutSetting("token_secret", secret)
	})
	if err != nil {
		return nil, err
	}
	return []byte(secret), nil
}
