package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// PasswordParams are argon2id's cost parameters. A stored hash
// carries its own, so they may grow later without a migration.
type PasswordParams struct {
	MemoryKiB uint32
	Time      uint32
	Threads   uint8
}

// DefaultPasswordParams are OWASP's recommendation: 19 MiB, 2 passes,
// one lane (about 30 ms a check).
func DefaultPasswordParams() PasswordParams {
	return PasswordParams{MemoryKiB: 19 * 1024, Time: 2, Threads: 1}
}

const (
	argonKeyLen  = 32
	argonSaltLen = 16
)

// MinPasswordLength is the shortest password HashPassword accepts.
const MinPasswordLength = 10

// ErrPasswordTooShort is returned for a password shorter than
// MinPasswordLength characters.
var ErrPasswordTooShort = fmt.Errorf("a password needs at least %d characters", MinPasswordLength)

// HashPassword returns the argon2id hash of password with
// DefaultPasswordParams as a PHC string ($argon2id$v=19$m=…,t=…,p=…$
// salt$key), what the store keeps.
func HashPassword(password string) (string, error) {
	if len([]rune(password)) < MinPasswordLength {
		return "", ErrPasswordTooShort
	}
	return hashWith(password, DefaultPasswordParams())
}

// HashPasswordWith is HashPassword with other cost parameters (tests
// use cheap ones).
func HashPasswordWith(password string, p PasswordParams) (string, error) {
	if len([]rune(password)) < MinPasswordLength {
		return "", ErrPasswordTooShort
	}
	if p.MemoryKiB == 0 || p.Time == 0 || p.Threads == 0 {
		return "", errors.New("argon2id parameters must be positive")
	}
	return hashWith(password, p)
}

func hashWith(password string, p PasswordParams) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// dummyHash returns a PHC string with p's parameters, a random salt and
// a random key: checking a password against it costs what checking it
// against a real hash with p costs (one argon2id derivation, then a
// comparison that fails), without spending one to make it.
func dummyHash(p PasswordParams) (string, error) {
	if p.MemoryKiB == 0 || p.Time == 0 || p.Threads == 0 {
		return "", errors.New("argon2id parameters must be positive")
	}
	b := make([]byte, argonSaltLen+argonKeyLen)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Time, p.Threads,
		b64.EncodeToString(b[:argonSaltLen]), b64.EncodeToString(b[argonSaltLen:])), nil
}

// VerifyPassword reports whether password matches a PHC hash made by
// HashPassword. A malformed hash matches nothing.
func VerifyPassword(hash, password string) bool {
	ok, err := verify(hash, password)
	return err == nil && ok
}

func verify(hash, password string) (bool, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errors.New("not an argon2id hash")
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, errors.New("unknown argon2 version")
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || m > 1<<22 || t == 0 || t > 100 || p == 0 {
		return false, errors.New("bad argon2 parameters")
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return false, err
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) == 0 || len(want) > 128 {
		return false, errors.New("bad argon2 key")
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
