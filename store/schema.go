package store

// migrations are applied in order at Open; the database's
// PRAGMA user_version records how many have run. Never edit a
// migration that has shipped: append a new one.
//
// Times are stored as TEXT in a fixed-width UTC form
// (2006-01-02T15:04:05.000000Z) so that they sort and compare as
// strings. Attachment content is stored once per SHA-256 in the blobs
// table, inside the database, so that a message, its attachments and
// its ticket change commit in one transaction and a backup of the one
// file is complete.
var migrations = []string{
	// 1: the whole product's tables.
	`
CREATE TABLE pipelines (
	id INTEGER PRIMARY KEY,
	name TEXT NOT NULL UNIQUE,
	new_status INTEGER NOT NULL DEFAULT 2,
	customer_reply_status INTEGER NOT NULL DEFAULT 2,
	agent_reply_status INTEGER,            -- NULL: unchanged
	closed_reply TEXT NOT NULL DEFAULT 'new_ticket'
		CHECK (closed_reply IN ('new_ticket','reopen','reopen_within')),
	reopen_within_seconds INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE statuses (
	code INTEGER PRIMARY KEY CHECK (code >= 2),
	name TEXT NOT NULL,
	category TEXT NOT NULL CHECK (category IN ('open','pending','resolved','closed'))
);

CREATE TABLE pipeline_statuses (
	pipeline_id INTEGER NOT NULL REFERENCES pipelines(id) ON DELETE CASCADE,
	status_code INTEGER NOT NULL REFERENCES statuses(code),
	position INTEGER NOT NULL,
	PRIMARY KEY (pipeline_id, status_code)
);

CREATE TABLE channels (
	id INTEGER PRIMARY KEY,
	name TEXT NOT NULL UNIQUE,
	address TEXT NOT NULL DEFAULT '',
	pipeline_id INTEGER REFERENCES pipelines(id),
	language TEXT NOT NULL DEFAULT 'en',
	created_at TEXT NOT NULL
);

CREATE TABLE contacts (
	id INTEGER PRIMARY KEY,
	email TEXT NOT NULL UNIQUE COLLATE NOCASE,
	name TEXT NOT NULL DEFAULT '',
	language TEXT NOT NULL DEFAULT '',
	bouncing INTEGER NOT NULL DEFAULT 0,
	bounced_at TEXT,
	bounce_reason TEXT NOT NULL DEFAULT '',
	created_at TEXT NOT NULL,
	updated_at TEXT NOT NULL
);

CREATE TABLE agents (
	id INTEGER PRIMARY KEY,
	email TEXT NOT NULL UNIQUE COLLATE NOCASE,
	name TEXT NOT NULL DEFAULT '',
	role TEXT NOT NULL DEFAULT 'agent' CHECK (role IN ('agent','admin')),
	active INTEGER NOT NULL DEFAULT 1,
	created_at TEXT NOT NULL
);

CREATE TABLE api_keys (
	id INTEGER PRIMARY KEY,
	agent_id INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
	key_hash TEXT NOT NULL UNIQUE,
	created_at TEXT NOT NULL,
	last_used_at TEXT
);

CREATE TABLE tickets (
	id INTEGER PRIMARY KEY,
	channel_id INTEGER REFERENCES channels(id),
	pipeline_id INTEGER REFERENCES pipelines(id),
	subject TEXT NOT NULL DEFAULT '',
	status INTEGER NOT NULL DEFAULT 2 REFERENCES statuses(code),
	priority INTEGER NOT NULL DEFAULT 1 CHECK (priority BETWEEN 1 AND 4),
	type TEXT,
	group_name TEXT,
	responder_id INTEGER REFERENCES agents(id),
	requester_id INTEGER NOT NULL REFERENCES contacts(id),
	parent_id INTEGER REFERENCES tickets(id),
	source INTEGER NOT NULL DEFAULT 1,
	deleted INTEGER NOT NULL DEFAULT 0,
	created_at TEXT NOT NULL,
	updated_at TEXT NOT NULL,
	first_responded_at TEXT,
	agent_responded_at TEXT,
	requester_responded_at TEXT,
	status_updated_at TEXT,
	resolved_at TEXT,
	closed_at TEXT
);
CREATE INDEX tickets_requester ON tickets(requester_id);
CREATE INDEX tickets_updated ON tickets(updated_at);
CREATE INDEX tickets_status ON tickets(status);
CREATE INDEX tickets_parent ON tickets(parent_id);

CREATE TABLE ticket_tags (
	ticket_id INTEGER NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
	tag TEXT NOT NULL COLLATE NOCASE,
	PRIMARY KEY (ticket_id, tag)
);

CREATE TABLE ticket_cc (
	ticket_id INTEGER NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
	email TEXT NOT NULL COLLATE NOCASE,
	added_at TEXT NOT NULL,
	PRIMARY KEY (ticket_id, email)
);

-- Every message exactly as received, for audit and re-processing.
CREATE TABLE raw_messages (
	id INTEGER PRIMARY KEY,
	channel_id INTEGER REFERENCES channels(id),
	source TEXT NOT NULL,
	name TEXT NOT NULL DEFAULT '',
	sha256 TEXT NOT NULL,
	size INTEGER NOT NULL,
	data BLOB NOT NULL,
	envelope TEXT NOT NULL DEFAULT '{}',
	received_at TEXT NOT NULL,
	state TEXT NOT NULL DEFAULT 'processed'
		CHECK (state IN ('processed','failed','ignored','duplicate')),
	error TEXT NOT NULL DEFAULT '',
	warnings TEXT NOT NULL DEFAULT '[]',
	message_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX raw_messages_state ON raw_messages(state);
CREATE INDEX raw_messages_sha ON raw_messages(sha256);

CREATE TABLE conversations (
	id INTEGER PRIMARY KEY,
	ticket_id INTEGER NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
	raw_id INTEGER REFERENCES raw_messages(id),
	incoming INTEGER NOT NULL,
	private INTEGER NOT NULL DEFAULT 0,
	kind TEXT NOT NULL DEFAULT 'reply'
		CHECK (kind IN ('reply','note','auto_reply','bounce','forward')),
	contact_id INTEGER REFERENCES contacts(id),
	agent_id INTEGER REFERENCES agents(id),
	from_email TEXT NOT NULL DEFAULT '',
	from_name TEXT NOT NULL DEFAULT '',
	to_emails TEXT NOT NULL DEFAULT '[]',
	cc_emails TEXT NOT NULL DEFAULT '[]',
	subject TEXT NOT NULL DEFAULT '',
	body_text TEXT NOT NULL DEFAULT '',
	body_html TEXT NOT NULL DEFAULT '',
	reply_text TEXT NOT NULL DEFAULT '',
	message_id TEXT NOT NULL DEFAULT '',
	created_at TEXT NOT NULL,
	updated_at TEXT NOT NULL
);
CREATE INDEX conversations_ticket ON conversations(ticket_id, id);

CREATE TABLE blobs (
	sha256 TEXT PRIMARY KEY,
	size INTEGER NOT NULL,
	data BLOB NOT NULL
);

CREATE TABLE attachments (
	id INTEGER PRIMARY KEY,
	conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
	blob_sha256 TEXT NOT NULL REFERENCES blobs(sha256),
	filename TEXT NOT NULL,
	original_filename TEXT NOT NULL DEFAULT '',
	content_type TEXT NOT NULL DEFAULT 'application/octet-stream',
	size INTEGER NOT NULL,
	inline INTEGER NOT NULL DEFAULT 0,
	content_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX attachments_conversation ON attachments(conversation_id);

-- Every Message-ID deskmail received or sent. A UNIQUE key makes
-- ingestion idempotent: the same mail twice is one conversation.
CREATE TABLE message_ids (
	message_id TEXT PRIMARY KEY,
	direction TEXT NOT NULL CHECK (direction IN ('in','out')),
	channel_id INTEGER REFERENCES channels(id),
	ticket_id INTEGER REFERENCES tickets(id) ON DELETE SET NULL,
	conversation_id INTEGER REFERENCES conversations(id) ON DELETE SET NULL,
	raw_id INTEGER REFERENCES raw_messages(id),
	created_at TEXT NOT NULL
);
CREATE INDEX message_ids_ticket ON message_ids(ticket_id);

CREATE TABLE history (
	id INTEGER PRIMARY KEY,
	ticket_id INTEGER NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
	at TEXT NOT NULL,
	actor_type TEXT NOT NULL
		CHECK (actor_type IN ('mail','agent','admin','api','rule','system')),
	actor TEXT NOT NULL DEFAULT '',
	conversation_id INTEGER REFERENCES conversations(id) ON DELETE SET NULL,
	action TEXT NOT NULL,
	field TEXT NOT NULL DEFAULT '',
	old_value TEXT,
	new_value TEXT,
	note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX history_ticket ON history(ticket_id, id);

-- Outbound mail, written in the same transaction as the change that
-- caused it and delivered by the outbox worker.
CREATE TABLE outbox (
	id INTEGER PRIMARY KEY,
	ticket_id INTEGER REFERENCES tickets(id) ON DELETE SET NULL,
	conversation_id INTEGER REFERENCES conversations(id) ON DELETE SET NULL,
	channel_id INTEGER REFERENCES channels(id),
	kind TEXT NOT NULL,
	mail_from TEXT NOT NULL,
	rcpt_to TEXT NOT NULL DEFAULT '[]',
	subject TEXT NOT NULL DEFAULT '',
	message_id TEXT NOT NULL,
	raw BLOB,
	state TEXT NOT NULL DEFAULT 'queued'
		CHECK (state IN ('queued','sent','failed','suppressed')),
	attempts INTEGER NOT NULL DEFAULT 0,
	next_attempt_at TEXT NOT NULL,
	last_error TEXT NOT NULL DEFAULT '',
	created_at TEXT NOT NULL,
	sent_at TEXT
);
CREATE INDEX outbox_due ON outbox(state, next_attempt_at);
CREATE INDEX outbox_ticket ON outbox(ticket_id, id);

-- IMAP checkpoints: UIDVALIDITY and the last processed UID per folder.
CREATE TABLE imap_state (
	channel TEXT NOT NULL,
	mailbox TEXT NOT NULL,
	uid_validity INTEGER NOT NULL,
	last_uid INTEGER NOT NULL DEFAULT 0,
	updated_at TEXT NOT NULL,
	PRIMARY KEY (channel, mailbox)
);

-- Health of each channel, for /readyz and deskmail status.
CREATE TABLE channel_health (
	channel TEXT PRIMARY KEY,
	last_poll_at TEXT,
	last_ok_at TEXT,
	last_error TEXT NOT NULL DEFAULT '',
	last_error_at TEXT
);

-- OAuth refresh tokens: providers rotate them; the newest must be kept.
CREATE TABLE oauth_tokens (
	channel TEXT PRIMARY KEY,
	refresh_token TEXT NOT NULL,
	updated_at TEXT NOT NULL
);
`,
	// 2: settings kept with the data (the generated token secret).
	`
CREATE TABLE settings (
	key TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
`,
	// 3: IMAP pollers: consecutive failures in channel health, and the
	// boundary between mail that was in a folder before its channel
	// was first polled (history) and mail that arrived later.
	`
ALTER TABLE channel_health ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE imap_state ADD COLUMN started_at TEXT;
ALTER TABLE imap_state ADD COLUMN history_uid INTEGER NOT NULL DEFAULT 0;
ALTER TABLE imap_state ADD COLUMN history_before TEXT;
`,
	// 4: Freshdesk's built-in statuses exist in every database, so a
	// ticket can be stored before any configuration is synced.
	`
INSERT OR IGNORE INTO statuses(code, name, category) VALUES
	(2, 'Open', 'open'), (3, 'Pending', 'pending'), (4, 'Resolved', 'resolved'), (5, 'Closed', 'closed');
`,
	// 5: the confirmation rate limit (CountOutboxTo) reads only the
	// last hour of one kind instead of the whole outbox.
	`
CREATE INDEX outbox_kind_created ON outbox(kind, created_at);
`,
	// 6: custom ticket fields (declared in the configuration).
	`
CREATE TABLE ticket_custom_fields (
	ticket_id INTEGER NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
	name TEXT NOT NULL,
	value TEXT NOT NULL,
	PRIMARY KEY (ticket_id, name)
);
`,
	// 7: IMAP messages the server would not deliver (FETCH answered NO
	// or BAD), counted per attempt and finally set aside so that the
	// folder carries on; and, per saved OAuth refresh token, the
	// SHA-256 of the configured token its rotation chain started from,
	// so that a token the operator puts in the configuration wins.
	`
CREATE TABLE imap_unfetchable (
	channel TEXT NOT NULL,
	mailbox TEXT NOT NULL,
	uid_validity INTEGER NOT NULL,
	uid INTEGER NOT NULL,
	attempts INTEGER NOT NULL DEFAULT 0,
	server_answer TEXT NOT NULL DEFAULT '',
	first_failed_at TEXT NOT NULL,
	last_failed_at TEXT NOT NULL,
	set_aside_at TEXT,   -- NULL while the poller still retries it
	moved_to TEXT,       -- the failed folder, when the server let us move it
	PRIMARY KEY (channel, mailbox, uid_validity, uid)
);
ALTER TABLE oauth_tokens ADD COLUMN configured_sha256 TEXT NOT NULL DEFAULT '';
`,
	// 8: every delivery status report received, with what it proved:
	// the outbox mail it answers (by the signed envelope sender or by
	// our Message-ID), and whether it flagged anyone. A contact's flag
	// names the report (or the relay refusal) that set it.
	`
CREATE TABLE bounces (
	id INTEGER PRIMARY KEY,
	raw_id INTEGER REFERENCES raw_messages(id),
	received_at TEXT NOT NULL,
	message_id TEXT NOT NULL DEFAULT '',   -- the report's own Message-ID
	from_email TEXT NOT NULL DEFAULT '',
	status TEXT NOT NULL DEFAULT '',       -- first enhanced status code
	recipients TEXT NOT NULL DEFAULT '[]', -- the failed recipients it names
	outbox_id INTEGER REFERENCES outbox(id) ON DELETE SET NULL,
	ticket_id INTEGER REFERENCES tickets(id) ON DELETE SET NULL,
	outcome TEXT NOT NULL CHECK (outcome IN ('flagged','transient','uncorrelated')),
	note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX bounces_outcome ON bounces(outcome, id);
CREATE INDEX outbox_message_id ON outbox(message_id);
ALTER TABLE contacts ADD COLUMN bounce_status TEXT NOT NULL DEFAULT '';
ALTER TABLE contacts ADD COLUMN bounce_id INTEGER REFERENCES bounces(id) ON DELETE SET NULL;
`,
	// 9: Outlook/Exchange conversations (the 22-byte head of a
	// Thread-Index, hex) and the ticket their latest mail is on, for
	// replies that lost In-Reply-To and References.
	`
CREATE TABLE thread_indexes (
	conversation TEXT PRIMARY KEY,
	ticket_id INTEGER NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
	updated_at TEXT NOT NULL
);
CREATE INDEX thread_indexes_ticket ON thread_indexes(ticket_id);
`,
	// 10: outbound mail by recipient address, kept by triggers, so that
	// the confirmation rate limit (CountOutboxTo) reads only the mail of
	// that address: with the (kind, created_at) index of migration 5 it
	// read every confirmation of the last hour, per message — most of
	// the time of a 5,000-mail batch.
	`
CREATE TABLE outbox_rcpt (
	outbox_id INTEGER NOT NULL REFERENCES outbox(id) ON DELETE CASCADE,
	address TEXT NOT NULL COLLATE NOCASE
);
CREATE INDEX outbox_rcpt_address ON outbox_rcpt(address, outbox_id);
CREATE INDEX outbox_rcpt_outbox ON outbox_rcpt(outbox_id);
INSERT INTO outbox_rcpt(outbox_id, address)
	SELECT o.id, j.value FROM outbox o, json_each(o.rcpt_to) j WHERE j.type = 'text';
CREATE TRIGGER outbox_rcpt_insert AFTER INSERT ON outbox BEGIN
	INSERT INTO outbox_rcpt(outbox_id, address)
		SELECT NEW.id, value FROM json_each(NEW.rcpt_to) WHERE type = 'text';
END;
CREATE TRIGGER outbox_rcpt_update AFTER UPDATE OF rcpt_to ON outbox BEGIN
	DELETE FROM outbox_rcpt WHERE outbox_id = NEW.id;
	INSERT INTO outbox_rcpt(outbox_id, address)
		SELECT NEW.id, value FROM json_each(NEW.rcpt_to) WHERE type = 'text';
END;
`,
	// 11: the highest UID of a folder whose fetch a poller started, so
	// that after a session (or the process) died mid-fetch the next
	// one fetches the messages above the checkpoint one by one,
	// counting an attempt for each before its fetch.
	`
ALTER TABLE imap_state ADD COLUMN fetching_through INTEGER NOT NULL DEFAULT 0;
`,
	// 12: SLA clocks and time-based rules. One row per ticket under an
	// SLA policy or an auto-close rule: its due times, the business
	// time its clock has counted, the time paused in pending-category
	// statuses, whether each target was escalated, and next_at — the
	// earliest timer still to fire, which the one scheduler reads from
	// the partial index. Webhook deliveries are a durable queue like the
	// outbox, written in the transaction of the event they report.
	`
CREATE TABLE ticket_sla (
	ticket_id INTEGER PRIMARY KEY REFERENCES tickets(id) ON DELETE CASCADE,
	policy TEXT NOT NULL DEFAULT '',
	priority INTEGER NOT NULL DEFAULT 1,
	category TEXT NOT NULL DEFAULT 'open',
	running_since TEXT,                         -- NULL while the clock is stopped
	consumed_seconds REAL NOT NULL DEFAULT 0,   -- business time counted before running_since
	paused_at TEXT,                             -- start of the current pending spell
	paused_seconds REAL NOT NULL DEFAULT 0,     -- wall time spent pending, spells before paused_at
	fr_due_at TEXT,
	due_at TEXT,
	fr_escalated_at TEXT,
	escalated_at TEXT,
	close_at TEXT,                              -- auto-close of a resolved ticket
	next_at TEXT,                               -- earliest timer still to fire
	updated_at TEXT NOT NULL
);
CREATE INDEX ticket_sla_next ON ticket_sla(next_at) WHERE next_at IS NOT NULL;

CREATE TABLE webhook_deliveries (
	id INTEGER PRIMARY KEY,
	webhook TEXT NOT NULL,
	url TEXT NOT NULL,
	event TEXT NOT NULL,
	ticket_id INTEGER REFERENCES tickets(id) ON DELETE SET NULL,
	payload BLOB NOT NULL,
	state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued','sent','failed')),
	attempts INTEGER NOT NULL DEFAULT 0,
	next_attempt_at TEXT NOT NULL,
	last_error TEXT NOT NULL DEFAULT '',
	created_at TEXT NOT NULL,
	sent_at TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(state, next_attempt_at);
`,
	// 13: the ticket list and search are newest first: read the
	// newest tickets from an index instead of sorting them all.
	`
CREATE INDEX tickets_created ON tickets(created_at);
`,
	// 14: several deskmail instances on one database. Each running
	// instance has a row (its heartbeat keeps it fresh); an IMAP
	// folder is polled by the one instance holding its lease, whose
	// token grows at every takeover (a fencing token: a poller checks
	// it in the commit before it acknowledges mail on the server).
	`
CREATE TABLE instances (
	id TEXT PRIMARY KEY,
	host TEXT NOT NULL DEFAULT '',
	pid INTEGER NOT NULL DEFAULT 0,
	version TEXT NOT NULL DEFAULT '',
	started_at TEXT NOT NULL,
	heartbeat_at TEXT NOT NULL,
	stopped_at TEXT
);
CREATE TABLE imap_leases (
	channel TEXT NOT NULL,
	mailbox TEXT NOT NULL,
	owner TEXT NOT NULL,
	token INTEGER NOT NULL,
	acquired_at TEXT NOT NULL,
	expires_at TEXT NOT NULL,
	PRIMARY KEY (channel, mailbox)
);
`,
	// 15: what the API keeps of a contact besides name and language —
	// phone, IANA time zone, tags (a JSON array of strings) — and the
	// soft delete (deleted_at set: the contact is out of lists and its
	// new mail opens tickets in the trash until it is restored).
	`
ALTER TABLE contacts ADD COLUMN phone TEXT NOT NULL DEFAULT '';
ALTER TABLE contacts ADD COLUMN time_zone TEXT NOT NULL DEFAULT '';
ALTER TABLE contacts ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE contacts ADD COLUMN deleted_at TEXT;
`,
	// 16: the web console. An agent's password is an argon2id hash
	// (PHC string) beside the agent, with the language the console
	// speaks to them in; a sign-in session is kept server-side under
	// the SHA-256 of its random token (the cookie holds the token, so
	// a copy of the database signs nobody in), with its per-session
	// CSRF token and the time it was last used (inactivity expiry).
	`
ALTER TABLE agents ADD COLUMN password_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN language TEXT NOT NULL DEFAULT '';
CREATE TABLE console_sessions (
	token_hash TEXT PRIMARY KEY,
	agent_id INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
	csrf_token TEXT NOT NULL,
	client TEXT NOT NULL DEFAULT '',
	created_at TEXT NOT NULL,
	last_seen_at TEXT NOT NULL
);
CREATE INDEX console_sessions_agent ON console_sessions(agent_id);
`,
	// 17: when the access token an OAuth mailbox last obtained
	// expires (the provider's expires_in), for the ops views; set at
	// each new access token.
	`
ALTER TABLE channel_health ADD COLUMN oauth_expires_at TEXT;
`,
	// 18: which instance claimed a mail for delivery (its id in
	// instances; '' for a process without one, or once the attempt
	// was recorded): the claims of an instance whose heartbeat stopped
	// are released at once instead of at the end of their lease.
	`
ALTER TABLE outbox ADD COLUMN claimed_by TEXT NOT NULL DEFAULT '';
CREATE INDEX outbox_claimed ON outbox(claimed_by) WHERE claimed_by<>'';
`,
	// 19: batch ingest writes less per mail. raw_messages_sha was never
	// read (no query looks a raw message up by its hash) and cost every
	// mail an insert at a random place of a large index. A
	// conversation's visible reply text is most often its whole text
	// (nothing quoted, no signature): reply_is_text then says so and
	// reply_text stays empty (see AddConversation), one copy of the
	// text instead of two.
	`
DROP INDEX IF EXISTS raw_messages_sha;
ALTER TABLE conversations ADD COLUMN reply_is_text INTEGER NOT NULL DEFAULT 0;
`,
	// 20: on PostgreSQL, enqueueing outbound mail writes its outbox_rcpt
	// rows itself instead of migration 10's row trigger (see
	// pgMigrationOverrides). SQLite keeps its trigger: nothing to do.
	`
SELECT 1;
`,
}
