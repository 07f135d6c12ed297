package store

import (
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// RawMessage is a message exactly as received.
type RawMessage struct {
	ID         int64
	ChannelID  *int64
	Source     string
	Name       string
	Data       []byte
	SHA256     string
	Envelope   any // marshalled to JSON
	ReceivedAt time.Time
	State      string // processed, failed, ignored, duplicate
	Error      string
	Warnings   []string
	MessageID  string
	// Size is the length of Data (set by ListRaw, which leaves Data
	// out).
	Size int64
}

// AddRaw stores a raw message and returns its id.
func (t *Tx) AddRaw(r *RawMessage) (int64, error) {
	if r.SHA256 == "" {
		h := sha256.Sum256(r.Data)
		r.SHA256 = hex.EncodeToString(h[:])
	}
	if r.State == "" {
		r.State = "processed"
	}
	env, err := json.Marshal(r.Envelope)
	if err != nil || r.Envelope == nil {
		env = []byte("{}")
	}
	warn, _ := json.Marshal(nonNil(r.Warnings))
	if r.ReceivedAt.IsZero() {
		r.ReceivedAt = t.now()
	}
	id, err := t.insert(`INSERT INTO raw_messages(channel_id, source, name, sha256, size, data, envelope, received_at, state, error, warnings, message_id)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`, int64OrNil(r.ChannelID), r.Source, r.Name, r.SHA256, len(r.Data), r.Data, string(env),
		ts(r.ReceivedAt), r.State, r.Error, string(warn), r.MessageID)
	if err != nil {
		return 0, fmt.Errorf("store: add raw message: %w", err)
	}
	r.ID = id
	return id, nil
}

// SetRawState records what became of a raw message.
func (t *Tx) SetRawState(id int64, state, errText string) error {
	if _, err := t.exec(`UPDATE raw_messages SET state=?, error=? WHERE id=?`, state, errText, id); err != nil {
		return fmt.Errorf("store: raw message %d: %w", id, err)
	}
	return nil
}

// RawData returns the stored bytes of a raw message.
func (t *Tx) RawData(id int64) ([]byte, error) {
	var b []byte
	if err := t.row(`SELECT data FROM raw_messages WHERE id=?`, id).Scan(&b); err != nil {
		return nil, notFound(err, fmt.Sprintf("raw message %d", id))
	}
	return b, nil
}

// ListRaw lists raw messages in a state, newest first, at most limit,
// without their bytes (Envelope is the stored JSON, a json.RawMessage).
func (t *Tx) ListRaw(state string, limit int) ([]RawMessage, error) {
	rows, err := t.query(`SELECT id, channel_id, source, name, sha256, size, envelope, received_at, state, error, message_id
		FROM raw_messages WHERE state=? ORDER BY id DESC LIMIT ?`, state, limit)
	if err != nil {
		return nil, fmt.Errorf("store: list raw: %w", err)
	}
	defer rows.Close()
	out := []RawMessage{}
	for rows.Next() {
		r, err := scanRaw(rows, false)
		if err != nil {
			return nil, fmt.Errorf("store: list raw: %w", err)
		}
		out = append(out, *r)
	}
	return out, rows.Err()
}

// RawMessageByID returns a raw message with its bytes.
func (t *Tx) RawMessageByID(id int64) (*RawMessage, error) {
	r, err := scanRaw(t.row(`SELECT id, channel_id, source, name, sha256, size, envelope, received_at, state, error, message_id, data
		FROM raw_messages WHERE id=?`, id), true)
	if err != nil {
		return nil, notFound(err, fmt.Sprintf("raw message %d", id))
	}
	return r, nil
}

func scanRaw(sc interface{ Scan(...any) error }, withData bool) (*RawMessage, error) {
	var r RawMessage
	var ch sql.NullInt64
	var size int64
	var env, received string
	dest := []any{&r.ID, &ch, &r.Source, &r.Name, &r.SHA256, &size, &env, &received, &r.State, &r.Error, &r.MessageID}
	if withData {
		dest = append(dest, &r.Data)
	}
	if err := sc.Scan(dest...); err != nil {
		return nil, err
	}
	r.ChannelID, r.Envelope, r.ReceivedAt, r.Size = nint(ch), json.RawMessage(env), pts(received), size
	return &r, nil
}

// CountRaw counts raw messages in a state ("" for all).
func (t *Tx) CountRaw(state string) (int, error) {
	var n int
	err := t.row(`SELECT COUNT(*) FROM raw_messages WHERE ?='' OR state=?`, state, state).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: count raw: %w", err)
	}
	return n, nil
}

// MessageRef is one entry of the Message-ID index.
type MessageRef struct {
	MessageID      string
	Direction      string // "in" or "out"
	ChannelID      *int64
	TicketID       *int64
	ConversationID *int64
	RawID          *int64
}

// AddMessageID records a Message-ID. It returns ErrDuplicate when the
// id is already known: that is how ingestion stays idempotent.
func (t *Tx) AddMessageID(m MessageRef) error {
	return t.addMessageID(m, ts(t.now()))
}

// addMessageID is AddMessageID with the row's created_at.
func (t *Tx) addMessageID(m MessageRef, at string) error {
	if t.deferClaim(m, at) {
		return nil // inserted later, with its targets (see claim.go)
	}
	if t.pg != nil && t.fast != nil {
		// A fast attempt on PostgreSQL (see pgwrite.go) queues a plain
		// INSERT instead of waiting for the row count: ingestion looks
		// the Message-ID up first, so only a race with another instance
		// fails it, and the batch then runs again the safe way, where
		// the ON CONFLICT below answers ErrDuplicate.
		err := t.pg.queueClaim(t.ctx, t.quiet, t.d.q(sqlAddMessageID),
			pgArgs([]any{m.MessageID, m.Direction, int64OrNil(m.ChannelID), int64OrNil(m.TicketID), int64OrNil(m.ConversationID), int64OrNil(m.RawID), at}))
		if err != nil {
			return fmt.Errorf("store: message-id %s: %w", m.MessageID, err)
		}
		// Should the INSERT fail, the attempt fails with it.
		t.msgIDInserted(m)
		t.messageIDRecorded(m, at)
		return nil
	}
	// ON CONFLICT rather than catching the violation: on PostgreSQL a
	// failed statement aborts the whole transaction, and the caller
	// goes on after ErrDuplicate (the raw message is still recorded).
	var res sql.Result
	err := t.throughCaches(func() (err error) {
		res, err = t.exec(sqlAddMessageID+`
		ON CONFLICT(message_id) DO NOTHING`,
			m.MessageID, m.Direction, int64OrNil(m.ChannelID), int64OrNil(m.TicketID), int64OrNil(m.ConversationID), int64OrNil(m.RawID), at)
		return err
	})
	if err != nil {
		t.forgetThreads()
		t.msgIDUnknown(m.MessageID)
		return fmt.Errorf("store: message-id %s: %w", m.MessageID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		if err != nil {
			t.forgetThreads()
		}
		t.msgIDUnknown(m.MessageID)
		return fmt.Errorf("store: message-id %s: %w", m.MessageID, ErrDuplicate)
	}
	t.msgIDInserted(m)
	t.messageIDRecorded(m, at)
	return nil
}

// messageIDRecorded writes a recorded Message-ID through to the threads
// remembered; EnqueueOutbox accounts for its own row (threadEnqueued,
// with its outbox kind).
func (t *Tx) messageIDRecorded(m MessageRef, at string) {
	if !t.enqueuing {
		t.messageIDAdded(m, at, "")
	}
}

// SetMessageIDTarget points a Message-ID at its ticket and
// conversation once they exist.
func (t *Tx) SetMessageIDTarget(messageID string, ticketID, conversationID *int64) error {
	if t.pg != nil && t.fast != nil && storedAsIs(messageID) && t.pg.patchClaim(messageID, int64OrNil(ticketID), int64OrNil(conversationID)) {
		t.msgIDTargeted(messageID, ticketID, conversationID)
		t.messageIDTargeted(messageID, ticketID, conversationID)
		return nil // the claim, still queued, is inserted with them
	}
	if c := t.claim; c != nil && c.ref.MessageID == messageID {
		c.ref.TicketID, c.ref.ConversationID = ticketID, conversationID
		return t.flushClaim()
	}
	err := t.throughCaches(func() error {
		_, err := t.exec(sqlSetMsgTarget, int64OrNil(ticketID), int64OrNil(conversationID), messageID)
		return err
	})
	if err != nil {
		t.msgIDs = nil
		t.forgetThreads()
		return fmt.Errorf("store: message-id %s: %w", messageID, err)
	}
	t.msgIDTargeted(messageID, ticketID, conversationID)
	t.messageIDTargeted(messageID, ticketID, conversationID)
	return nil
}

// LookupMessageIDs returns the index entries for the given ids that
// exist, keyed by Message-ID.
func (t *Tx) LookupMessageIDs(ids []string) (map[string]MessageRef, error) {
	if out, ok := t.cachedMessageIDs(ids); ok {
		return out, nil
	}
	out, err := t.lookupMessageIDs(ids)
	if err != nil {
		return nil, err
	}
	t.noteMissing(ids, out)
	return out, nil
}

// lookupMessageIDs is LookupMessageIDs, asking the database.
func (t *Tx) lookupMessageIDs(ids []string) (map[string]MessageRef, error) {
	out := make(map[string]MessageRef, len(ids))
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(len(ids), start+500)]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		rows, err := t.query(`SELECT message_id, direction, channel_id, ticket_id, conversation_id, raw_id FROM message_ids WHERE message_id IN (`+placeholders(len(chunk))+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("store: lookup message-ids: %w", err)
		}
		found, err := scanMessageRefs(rows)
		if err != nil {
			return nil, fmt.Errorf("store: lookup message-ids: %w", err)
		}
		for id, m := range found {
			out[id] = m
		}
	}
	return out, nil
}

// scanMessageRefs reads and closes rows of message_id, direction,
// channel_id, ticket_id, conversation_id, raw_id.
func scanMessageRefs(rs rows) (map[string]MessageRef, error) {
	defer rs.Close()
	out := make(map[string]MessageRef)
	for rs.Next() {
		var m MessageRef
		var ch, tk, conv, raw sql.NullInt64
		if err := rs.Scan(&m.MessageID, &m.Direction, &ch, &tk, &conv, &raw); err != nil {
			return nil, err
		}
		m.ChannelID, m.TicketID, m.ConversationID, m.RawID = nint(ch), nint(tk), nint(conv), nint(raw)
		out[m.MessageID] = m
	}
	return out, rs.Err()
}

// TicketMessageIDs returns the Message-IDs recorded on a ticket, oldest
// first (for References of outbound mail).
func (t *Tx) TicketMessageIDs(ticketID int64) ([]string, error) {
	ids, err := t.strings(`SELECT message_id FROM message_ids WHERE ticket_id=? ORDER BY created_at, rowid`, ticketID)
	if err != nil {
		return nil, fmt.Errorf("store: ticket %d message-ids: %w", ticketID, err)
	}
	return ids, nil
}

// ThreadMessage is one Message-ID recorded on a ticket with the facts
// that tell who received it: outbound mail by its kind, received mail
// by the conversation it became.
type ThreadMessage struct {
	MessageID string
	// Direction is "in" (received) or "out" (sent by deskmail).
	Direction string
	// OutboxKind is, for an id we sent (Direction "out"), the kind of
	// our outbound mail with this id (confirmation, agent_reply,
	// notification…); "" when none, and for ids received (only sent
	// mail is looked up in the outbox: half of TicketThread's time
	// went to looking up every received id there).
	OutboxKind string
	// HasConversation is set when the id belongs to a conversation; the
	// fields below describe it.
	HasConversation bool
	Incoming        bool
	Private         bool
	// ConversationMessageID is the Message-ID the conversation records:
	// for an agent's reply by mail, the id of the mail deskmail sent on,
	// not the agent's own.
	ConversationMessageID string
	FromEmail             string
	// FromAgent is set when the conversation's sender is an agent.
	FromAgent bool
}

// TicketThread returns the Message-IDs recorded on a ticket, oldest
// first, with what outbound mail needs to build a References header
// for one audience (the customer's thread leaves out what only agents
// received).
func (t *Tx) TicketThread(ticketID int64) ([]ThreadMessage, error) {
	if out, ok := t.cachedThread(ticketID); ok {
		if t.verifyTickets {
			if err := t.verifyThread(ticketID, out); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	threads, err := t.readThreads(`m.ticket_id=?`, ticketID)
	if err != nil {
		return nil, fmt.Errorf("store: ticket %d thread: %w", ticketID, err)
	}
	th := threads[ticketID]
	if th == nil {
		th = &thread{ticket: ticketID}
	}
	t.rememberThread(th)
	return th.rows, nil
}

// TicketThreadIDs returns the Message-IDs recorded on a ticket in
// TicketThread's order (oldest first), without what tells audiences
// apart: the References of mail only agents receive (notifications,
// command errors, escalations), which carry every one of them, need no
// more. Its statement reads message_ids alone — TicketThread's join
// and its two subqueries per row cost each agent notification as much
// again as the one of its confirmation.
func (t *Tx) TicketThreadIDs(ticketID int64) ([]string, error) {
	if thread, ok := t.cachedThread(ticketID); ok {
		if t.verifyTickets {
			if err := t.verifyThread(ticketID, thread); err != nil {
				return nil, err
			}
		}
		// The thread remembered has a row for every one of them, in
		// this order (see thread).
		ids := make([]string, len(thread))
		for i, m := range thread {
			ids[i] = m.MessageID
		}
		return ids, nil
	}
	rows, err := t.query(`SELECT m.message_id FROM message_ids m WHERE m.ticket_id=? ORDER BY m.created_at, m.rowid`, ticketID)
	if err != nil {
		return nil, fmt.Errorf("store: ticket %d thread: %w", ticketID, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("store: ticket %d thread: %w", ticketID, err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: ticket %d thread: %w", ticketID, err)
	}
	return out, nil
}

// SetConversationMessageID records the Message-ID a conversation went
// out with (an agent's reply by mail is sent on under our own id).
func (t *Tx) SetConversationMessageID(id int64, messageID string) error {
	if err := t.throughCaches(func() error {
		_, err := t.exec(`UPDATE conversations SET message_id=? WHERE id=?`, messageID, id)
		return err
	}); err != nil {
		t.forgetThreads()
		return fmt.Errorf("store: conversation %d message-id: %w", id, err)
	}
	t.conversationMessageIDSet(id, messageID)
	return nil
}

// Conversation is one message of a ticket.
type Conversation struct {
	ID        int64        `json:"id"`
	TicketID  int64        `json:"ticket_id"`
	RawID     *int64       `json:"raw_id"`
	Incoming  bool         `json:"incoming"`
	Private   bool         `json:"private"`
	Kind      string       `json:"kind"`
	ContactID *int64       `json:"contact_id"`
	AgentID   *int64       `json:"agent_id"`
	FromEmail string       `json:"from_email"`
	FromName  string       `json:"from_name"`
	ToEmails  []string     `json:"to_emails"`
	CcEmails  []string     `json:"cc_emails"`
	Subject   string       `json:"subject"`
	BodyText  string       `json:"body_text"`
	BodyHTML  string       `json:"body"`
	ReplyText string       `json:"reply_text"`
	MessageID string       `json:"message_id"`
	CreatedAt time.Time    `json:"created_at"`
	UpdatedAt time.Time    `json:"updated_at"`
	Files     []Attachment `json:"attachments"`
}

// Attachment is a stored file of a conversation. Content is set only
// when inserting or when asked for with AttachmentContent.
type Attachment struct {
	ID               int64  `json:"id"`
	ConversationID   int64  `json:"conversation_id"`
	SHA256           string `json:"sha256"`
	Filename         string `json:"name"`
	OriginalFilename string `json:"original_name"`
	ContentType      string `json:"content_type"`
	Size             int64  `json:"size"`
	Inline           bool   `json:"inline"`
	ContentID        string `json:"content_id"`
	Content          []byte `json:"-"`
}

// AddConversation stores a conversation and its attachments (content
// stored once per SHA-256) and fills in the ids.
func (t *Tx) AddConversation(c *Conversation) error {
	now := t.now()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now
	}
	c.UpdatedAt = c.CreatedAt
	if c.Kind == "" {
		c.Kind = "reply"
	}
	to, _ := json.Marshal(nonNil(c.ToEmails))
	cc, _ := json.Marshal(nonNil(c.CcEmails))
	reply, replyIsText := c.ReplyText, c.ReplyText == replyOfText(c.BodyText)
	if replyIsText {
		reply = ""
	}
	var id int64
	err := t.throughCaches(func() (err error) {
		id, err = t.insert(`INSERT INTO conversations(ticket_id, raw_id, incoming, private, kind, contact_id, agent_id, from_email, from_name,
		to_emails, cc_emails, subject, body_text, body_html, reply_text, reply_is_text, message_id, created_at, updated_at)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			c.TicketID, int64OrNil(c.RawID), c.Incoming, c.Private, c.Kind, int64OrNil(c.ContactID), int64OrNil(c.AgentID), c.FromEmail, c.FromName,
			string(to), string(cc), c.Subject, c.BodyText, c.BodyHTML, reply, replyIsText, c.MessageID, ts(c.CreatedAt), ts(c.UpdatedAt))
		return err
	})
	if err != nil {
		t.forgetThreads()
		return fmt.Errorf("store: ticket %d add conversation: %w", c.TicketID, err)
	}
	c.ID = id
	if err := t.conversationAdded(c); err != nil {
		return err
	}
	for i := range c.Files {
		a := &c.Files[i]
		a.ConversationID = id
		if err := t.addAttachment(a); err != nil {
			return err
		}
	}
	return nil
}

func (t *Tx) addAttachment(a *Attachment) error {
	if a.SHA256 == "" {
		h := sha256.Sum256(a.Content)
		a.SHA256 = hex.EncodeToString(h[:])
	}
	a.Size = int64(len(a.Content))
	if _, err := t.exec(`INSERT INTO blobs(sha256, size, data) VALUES (?,?,?) ON CONFLICT DO NOTHING`, a.SHA256, a.Size, a.Content); err != nil {
		return fmt.Errorf("store: store attachment %s: %w", a.Filename, err)
	}
	if a.ContentType == "" {
		a.ContentType = "application/octet-stream"
	}
	id, err := t.insert(`INSERT INTO attachments(conversation_id, blob_sha256, filename, original_filename, content_type, size, inline, content_id)
		VALUES (?,?,?,?,?,?,?,?)`, a.ConversationID, a.SHA256, a.Filename, a.OriginalFilename, a.ContentType, a.Size, a.Inline, a.ContentID)
	if err != nil {
		return fmt.Errorf("store: attachment %s: %w", a.Filename, err)
	}
	a.ID = id
	return nil
}

// AttachmentContent returns an attachment's metadata and bytes.
func (t *Tx) AttachmentContent(id int64) (*Attachment, error) {
	var a Attachment
	err := t.row(`SELECT a.id, a.conversation_id, a.blob_sha256, a.filename, a.original_filename, a.content_type, a.size, a.inline, a.content_id, b.data
		FROM attachments a JOIN blobs b ON b.sha256=a.blob_sha256 WHERE a.id=?`, id).
		Scan(&a.ID, &a.ConversationID, &a.SHA256, &a.Filename, &a.OriginalFilename, &a.ContentType, &a.Size, &a.Inline, &a.ContentID, &a.Content)
	if err != nil {
		return nil, notFound(err, fmt.Sprintf("attachment %d", id))
	}
	return &a, nil
}

// replyOfText is the visible reply text of a conversation whose reply
// is its whole text: what the reply extractor keeps when it removes
// nothing. A conversation whose reply_text is exactly that is stored
// with reply_is_text set and reply_text empty.
func replyOfText(text string) string { return strings.TrimSpace(text) }

const convCols = `id, ticket_id, raw_id, incoming, private, kind, contact_id, agent_id, from_email, from_name, to_emails, cc_emails,
	subject, body_text, body_html, reply_text, reply_is_text, message_id, created_at, updated_at`

func scanConversation(sc interface{ Scan(...any) error }) (*Conversation, error) {
	var c Conversation
	var raw, contact, agent sql.NullInt64
	var to, cc, created, updated string
	var replyIsText bool
	if err := sc.Scan(&c.ID, &c.TicketID, &raw, &c.Incoming, &c.Private, &c.Kind, &contact, &agent, &c.FromEmail, &c.FromName, &to, &cc,
		&c.Subject, &c.BodyText, &c.BodyHTML, &c.ReplyText, &replyIsText, &c.MessageID, &created, &updated); err != nil {
		return nil, err
	}
	if replyIsText {
		c.ReplyText = replyOfText(c.BodyText)
	}
	c.RawID, c.ContactID, c.AgentID = nint(raw), nint(contact), nint(agent)
	c.CreatedAt, c.UpdatedAt = pts(created), pts(updated)
	c.ToEmails, c.CcEmails = []string{}, []string{}
	_ = json.Unmarshal([]byte(to), &c.ToEmails)
	_ = json.Unmarshal([]byte(cc), &c.CcEmails)
	c.Files = []Attachment{}
	return &c, nil
}

// Conversation returns one conversation with its attachment list.
func (t *Tx) Conversation(id int64) (*Conversation, error) {
	c, err := scanConversation(t.row(`SELECT `+convCols+` FROM conversations WHERE id=?`, id))
	if err != nil {
		return nil, notFound(err, fmt.Sprintf("conversation %d", id))
	}
	if err := t.fillAttachments([]*Conversation{c}); err != nil {
		return nil, err
	}
	return c, nil
}

// Conversations lists a ticket's conversations, oldest first.
func (t *Tx) Conversations(ticketID int64) ([]Conversation, error) {
	rows, err := t.query(`SELECT `+convCols+` FROM conversations WHERE ticket_id=? ORDER BY id`, ticketID)
	if err != nil {
		return nil, fmt.Errorf("store: ticket %d conversations: %w", ticketID, err)
	}
	var ptrs []*Conversation
	for rows.Next() {
		c, err := scanConversation(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: ticket %d conversations: %w", ticketID, err)
		}
		ptrs = append(ptrs, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: ticket %d conversations: %w", ticketID, err)
	}
	if err := t.fillAttachments(ptrs); err != nil {
		return nil, err
	}
	out := make([]Conversation, len(ptrs))
	for i, p := range ptrs {
		out[i] = *p
	}
	return out, nil
}

func (t *Tx) fillAttachments(cs []*Conversation) error {
	if len(cs) == 0 {
		return nil
	}
	byID := make(map[int64]*Conversation, len(cs))
	args := make([]any, len(cs))
	for i, c := range cs {
		byID[c.ID] = c
		args[i] = c.ID
	}
	rows, err := t.query(`SELECT id, conversation_id, blob_sha256, filename, original_filename, content_type, size, inline, content_id
		FROM attachments WHERE conversation_id IN (`+placeholders(len(cs))+`) ORDER BY id`, args...)
	if err != nil {
		return fmt.Errorf("store: attachments: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a Attachment
		if err := rows.Scan(&a.ID, &a.ConversationID, &a.SHA256, &a.Filename, &a.OriginalFilename, &a.ContentType, &a.Size, &a.Inline, &a.ContentID); err != nil {
			return fmt.Errorf("store: attachments: %w", err)
		}
		c := byID[a.ConversationID]
		c.Files = append(c.Files, a)
	}
	return rows.Err()
}

// UpdateConversationBody changes a conversation's body (editing a note).
func (t *Tx) UpdateConversationBody(id int64, text, html string) error {
	res, err := t.exec(`UPDATE conversations SET body_text=?, body_html=?, reply_text=?, reply_is_text=0, updated_at=? WHERE id=?`, text, html, text, ts(t.now()), id)
	if err != nil {
		return fmt.Errorf("store: conversation %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: conversation %d: %w", id, ErrNotFound)
	}
	return nil
}

// DeleteConversation removes a conversation.
func (t *Tx) DeleteConversation(id int64) error {
	res, err := t.exec(`DELETE FROM conversations WHERE id=?`, id)
	if err != nil {
		return fmt.Errorf("store: delete conversation %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: delete conversation %d: %w", id, ErrNotFound)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// SetThreadConversation records that the Outlook conversation conv (see
// threading.ThreadIndexConversation) is now on ticket ticketID: the
// ticket of its latest mail, so that a follow-up ticket takes the
// conversation over.
func (t *Tx) SetThreadConversation(conv string, ticketID int64) error {
	_, err := t.exec(`INSERT INTO thread_indexes(conversation, ticket_id, updated_at) VALUES (?,?,?)
		ON CONFLICT(conversation) DO UPDATE SET ticket_id=excluded.ticket_id, updated_at=excluded.updated_at`,
		conv, ticketID, ts(t.now()))
	if err != nil {
		return fmt.Errorf("store: thread conversation %s: %w", conv, err)
	}
	return nil
}

// ThreadConversationTicket returns the ticket an Outlook conversation
// is on, or ErrNotFound.
func (t *Tx) ThreadConversationTicket(conv string) (int64, error) {
	var id int64
	err := t.row(`SELECT ticket_id FROM thread_indexes WHERE conversation=?`, conv).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("store: thread conversation %s: %w", conv, err)
	}
	return id, nil
}
