package store

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// This file holds what the web console keeps: agents' password hashes
// and languages, and sign-in sessions. Sessions are stored under the
// hash of their token (HashKey), never the token itself.

// SetAgentPassword stores an active agent's password hash (a PHC
// string made by the console package) and ends every session the
// agent had, so a changed password signs out the old sessions.
func (t *Tx) SetAgentPassword(email, hash string) (*Agent, error) {
	a, err := t.AgentByEmail(email)
	if err != nil {
		return nil, err
	}
	if _, err := t.exec(`UPDATE agents SET password_hash=? WHERE id=?`, hash, a.ID); err != nil {
		return nil, fmt.Errorf("store: agent %s password: %w", email, err)
	}
	if err := t.DeleteAgentSessions(a.ID); err != nil {
		return nil, err
	}
	return a, nil
}

// AgentPassword returns an active agent and its password hash ("" when
// none was set) by address.
func (t *Tx) AgentPassword(email string) (*Agent, string, error) {
	var a Agent
	var hash string
	err := t.row(`SELECT `+agentCols+`, language, password_hash FROM agents WHERE email=? AND active=1`, strings.TrimSpace(email)).
		Scan(&a.ID, &a.Email, &a.Name, &a.Role, &a.Active, &a.Language, &hash)
	if err != nil {
		return nil, "", notFound(err, "agent "+email)
	}
	return &a, hash, nil
}

// SetAgentLanguage sets the language the console speaks to an agent
// in ("" follows the browser).
func (t *Tx) SetAgentLanguage(id int64, lang string) error {
	if _, err := t.exec(`UPDATE agents SET language=? WHERE id=?`, lang, id); err != nil {
		return fmt.Errorf("store: agent %d language: %w", id, err)
	}
	return nil
}

// SetAgentActive activates or deactivates an agent by address. A
// deactivated agent's API keys and console sessions stop working: the
// sessions are deleted here, and every lookup requires active=1.
func (t *Tx) SetAgentActive(email string, active bool) (*Agent, error) {
	var a Agent
	err := t.row(`SELECT `+agentCols+` FROM agents WHERE email=?`, strings.TrimSpace(email)).Scan(&a.ID, &a.Email, &a.Name, &a.Role, &a.Active)
	if err != nil {
		return nil, notFound(err, "agent "+email)
	}
	if _, err := t.exec(`UPDATE agents SET active=? WHERE id=?`, active, a.ID); err != nil {
		return nil, fmt.Errorf("store: agent %s active: %w", email, err)
	}
	if !active {
		if err := t.DeleteAgentSessions(a.ID); err != nil {
			return nil, err
		}
	}
	a.Active = active
	return &a, nil
}

// Session is a console sign-in session.
type Session struct {
	// TokenHash is HashKey of the cookie's token.
	TokenHash string
	Agent     Agent
	// CSRF is the token every state-changing form of the session
	// carries.
	CSRF       string
	Client     string
	CreatedAt  time.Time
	LastSeenAt time.Time
}

// CreateSession stores a new session for an agent.
func (t *Tx) CreateSession(s *Session) error {
	now := t.now()
	s.CreatedAt, s.LastSeenAt = now, now
	_, err := t.exec(`INSERT INTO console_sessions(token_hash, agent_id, csrf_token, client, created_at, last_seen_at) VALUES (?,?,?,?,?,?)`,
		s.TokenHash, s.Agent.ID, s.CSRF, s.Client, ts(now), ts(now))
	if err != nil {
		return fmt.Errorf("store: create session: %w", err)
	}
	return nil
}

// SessionByToken returns the session whose token hashes to tokenHash,
// with its agent, when the agent is active and the session was used
// after idleSince; otherwise ErrNotFound.
func (t *Tx) SessionByToken(tokenHash string, idleSince time.Time) (*Session, error) {
	var s Session
	var created, seen string
	err := t.row(`SELECT s.token_hash, s.csrf_token, s.client, s.created_at, s.last_seen_at,
		a.id, a.email, a.name, a.role, a.active, a.language
		FROM console_sessions s JOIN agents a ON a.id=s.agent_id
		WHERE s.token_hash=? AND a.active=1 AND s.last_seen_at>=?`, tokenHash, ts(idleSince)).
		Scan(&s.TokenHash, &s.CSRF, &s.Client, &created, &seen, &s.Agent.ID, &s.Agent.Email, &s.Agent.Name, &s.Agent.Role, &s.Agent.Active, &s.Agent.Language)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: session: %w", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: session: %w", err)
	}
	s.CreatedAt, s.LastSeenAt = pts(created), pts(seen)
	return &s, nil
}

// TouchSession records that a session was used at the transaction's
// time.
func (t *Tx) TouchSession(tokenHash string) error {
	if _, err := t.exec(`UPDATE console_sessions SET last_seen_at=? WHERE token_hash=?`, ts(t.now()), tokenHash); err != nil {
		return fmt.Errorf("store: touch session: %w", err)
	}
	return nil
}

// DeleteSession ends one session (sign-out).
func (t *Tx) DeleteSession(tokenHash string) error {
	if _, err := t.exec(`DELETE FROM console_sessions WHERE token_hash=?`, tokenHash); err != nil {
		return fmt.Errorf("store: delete session: %w", err)
	}
	return nil
}

// DeleteAgentSessions ends every session of an agent.
func (t *Tx) DeleteAgentSessions(agentID int64) error {
	if _, err := t.exec(`DELETE FROM console_sessions WHERE agent_id=?`, agentID); err != nil {
		return fmt.Errorf("store: delete sessions of agent %d: %w", agentID, err)
	}
	return nil
}

// DeleteIdleSessions removes the sessions last used before idleSince
// and returns how many.
func (t *Tx) DeleteIdleSessions(idleSince time.Time) (int64, error) {
	res, err := t.exec(`DELETE FROM console_sessions WHERE last_seen_at<?`, ts(idleSince))
	if err != nil {
		return 0, fmt.Errorf("store: delete idle sessions: %w", err)
	}
	return res.RowsAffected()
}
