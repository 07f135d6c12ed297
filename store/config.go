package store

import (
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Status is a ticket status: Freshdesk's codes 2–5 and custom codes
// (≥ 6) that behave like their category.
type Status struct {
	Code     int    `json:"code"`
	Name     string `json:"name"`
	Category string `json:"category"`
}

// Pipeline is an ordered list of statuses and the rules a channel's
// tickets follow.
type Pipeline struct {
	ID                  int64  `json:"id"`
	Name                string `json:"name"`
	NewStatus           int    `json:"new_status"`
	CustomerReplyStatus int    `json:"customer_reply_status"`
	// AgentReplyStatus nil means an agent reply leaves the status.
	AgentReplyStatus *int          `json:"agent_reply_status"`
	ClosedReply      string        `json:"closed_reply"`
	ReopenWithin     time.Duration `json:"-"`
	Statuses         []int         `json:"statuses"`
}

// Channel is a configured mail channel.
type Channel struct {
	ID         int64  `json:"id"`
	Name       string `json:"name"`
	Address    string `json:"address"`
	PipelineID *int64 `json:"pipeline_id"`
	Language   string `json:"language"`
}

// PutStatus creates or updates a status.
func (t *Tx) PutStatus(s Status) error {
	_, err := t.exec(`INSERT INTO statuses(code, name, category) VALUES (?,?,?)
		ON CONFLICT(code) DO UPDATE SET name=excluded.name, category=excluded.category`,
		s.Code, s.Name, s.Category)
	if err != nil {
		return fmt.Errorf("store: put status %d: %w", s.Code, err)
	}
	return nil
}

// Statuses lists every status by code.
func (t *Tx) Statuses() ([]Status, error) {
	rows, err := t.query(`SELECT code, name, category FROM statuses ORDER BY code`)
	if err != nil {
		return nil, fmt.Errorf("store: statuses: %w", err)
	}
	defer rows.Close()
	var out []Status
	for rows.Next() {
		var s Status
		if err := rows.Scan(&s.Code, &s.Name, &s.Category); err != nil {
			return nil, fmt.Errorf("store: statuses: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// PutPipeline creates or updates a pipeline by name, replaces its
// status list, and returns its id.
func (t *Tx) PutPipeline(p Pipeline) (int64, error) {
	var agent any
	if p.AgentReplyStatus != nil {
		agent = *p.AgentReplyStatus
	}
	_, err := t.exec(`INSERT INTO pipelines(name, new_status, customer_reply_status, agent_reply_status, closed_reply, reopen_within_seconds)
		VALUES (?,?,?,?,?,?)
		ON CONFLICT(name) DO UPDATE SET new_status=excluded.new_status,
			customer_reply_status=excluded.customer_reply_status,
			agent_reply_status=excluded.agent_reply_status,
			closed_reply=excluded.closed_reply,
			reopen_within_seconds=excluded.reopen_within_seconds`,
		p.Name, p.NewStatus, p.CustomerReplyStatus, agent, p.ClosedReply, int64(p.ReopenWithin/time.Second))
	if err != nil {
		return 0, fmt.Errorf("store: put pipeline %s: %w", p.Name, err)
	}
	var id int64
	if err := t.row(`SELECT id FROM pipelines WHERE name=?`, p.Name).Scan(&id); err != nil {
		return 0, fmt.Errorf("store: put pipeline %s: %w", p.Name, err)
	}
	if _, err := t.exec(`DELETE FROM pipeline_statuses WHERE pipeline_id=?`, id); err != nil {
		return 0, fmt.Errorf("store: put pipeline %s: %w", p.Name, err)
	}
	for i, code := range p.Statuses {
		if _, err := t.exec(`INSERT INTO pipeline_statuses(pipeline_id, status_code, position) VALUES (?,?,?)`, id, code, i); err != nil {
			return 0, fmt.Errorf("store: pipeline %s status %d: %w", p.Name, code, err)
		}
	}
	return id, nil
}

// Pipelines lists every pipeline with its statuses.
func (t *Tx) Pipelines() ([]Pipeline, error) {
	rows, err := t.query(`SELECT id, name, new_status, customer_reply_status, agent_reply_status, closed_reply, reopen_within_seconds FROM pipelines ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: pipelines: %w", err)
	}
	var out []Pipeline
	for rows.Next() {
		var p Pipeline
		var agent sql.NullInt64
		var secs int64
		if err := rows.Scan(&p.ID, &p.Name, &p.NewStatus, &p.CustomerReplyStatus, &agent, &p.ClosedReply, &secs); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: pipelines: %w", err)
		}
		if agent.Valid {
			v := int(agent.Int64)
			p.AgentReplyStatus = &v
		}
		p.ReopenWithin = time.Duration(secs) * time.Second
		out = append(out, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: pipelines: %w", err)
	}
	for i := range out {
		codes, err := t.ints(`SELECT status_code FROM pipeline_statuses WHERE pipeline_id=? ORDER BY position`, out[i].ID)
		if err != nil {
			return nil, fmt.Errorf("store: pipeline %s: %w", out[i].Name, err)
		}
		for _, c := range codes {
			out[i].Statuses = append(out[i].Statuses, int(c))
		}
	}
	return out, nil
}

// PutChannel creates or updates a channel by name and returns its id.
func (t *Tx) PutChannel(c Channel) (int64, error) {
	_, err := t.exec(`INSERT INTO channels(name, address, pipeline_id, language, created_at) VALUES (?,?,?,?,?)
		ON CONFLICT(name) DO UPDATE SET address=excluded.address, pipeline_id=excluded.pipeline_id, language=excluded.language`,
		c.Name, c.Address, int64OrNil(c.PipelineID), c.Language, ts(t.now()))
	if err != nil {
		return 0, fmt.Errorf("store: put channel %s: %w", c.Name, err)
	}
	var id int64
	if err := t.row(`SELECT id FROM channels WHERE name=?`, c.Name).Scan(&id); err != nil {
		return 0, fmt.Errorf("store: put channel %s: %w", c.Name, err)
	}
	return id, nil
}

// Channels lists the channels.
func (t *Tx) Channels() ([]Channel, error) {
	rows, err := t.query(`SELECT id, name, address, pipeline_id, language FROM channels ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: channels: %w", err)
	}
	defer rows.Close()
	var out []Channel
	for rows.Next() {
		var c Channel
		var p sql.NullInt64
		if err := rows.Scan(&c.ID, &c.Name, &c.Address, &p, &c.Language); err != nil {
			return nil, fmt.Errorf("store: channels: %w", err)
		}
		c.PipelineID = nint(p)
		out = append(out, c)
	}
	return out, rows.Err()
}

func (t *Tx) ints(query string, args ...any) ([]int64, error) {
	rows, err := t.query(query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func (t *Tx) strings(query string, args ...any) ([]string, error) {
	rows, err := t.query(query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// notFound maps sql.ErrNoRows to ErrNotFound with context.
func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("store: %s: %w", what, ErrNotFound)
	}
	return fmt.Errorf("store: %s: %w", what, err)
}
