package ingest

import "time"

// Source names where a raw message came from.
type Source string

// The sources that feed the pipeline.
const (
	SourceSMTP Source = "smtp"
	SourceIMAP Source = "imap"
	SourcePipe Source = "pipe"
	SourceAPI  Source = "api"
	// SourceImport is `deskmail import` of an existing archive.
	SourceImport Source = "import"
)

// Envelope is what the transport knew about a message besides its
// bytes. Fields a source does not know stay empty.
type Envelope struct {
	MailFrom   string    `json:"mail_from"`
	RcptTo     []string  `json:"rcpt_to"`
	ClientIP   string    `json:"client_ip"`
	Helo       string    `json:"helo"`
	TLS        bool      `json:"tls"`
	AuthUser   string    `json:"auth_user"`
	ReceivedAt time.Time `json:"received_at"`
	// IMAP origin, for exactly-once polling.
	Mailbox     string `json:"mailbox,omitempty"`
	UIDValidity uint32 `json:"uid_validity,omitempty"`
	UID         uint32 `json:"uid,omitempty"`
}

// Raw is one message as received, handed to the Pipeline.
type Raw struct {
	// Data is the message exactly as received.
	Data []byte
	// Source says which entry point received it.
	Source Source
	// Channel is the configured channel name the source belongs to;
	// empty lets the pipeline pick the channel from the recipients.
	Channel string
	// Name labels the message in results and logs (a file name, an
	// IMAP UID, an SMTP queue id).
	Name string
	// Envelope carries transport facts.
	Envelope Envelope
	// Quiet suppresses confirmations and notifications (history
	// import of an IMAP mailbox).
	Quiet bool
	// History marks old mail imported as history (an IMAP folder's
	// existing mail with imap.existing: import, deskmail import): its
	// tickets get no SLA clock, whose targets would be long past.
	History bool
	// Sent marks mail the team sent from the support mailbox itself (its
	// Sent folder): it is threaded as an agent reply and never mailed.
	Sent bool
}

// Action is what the pipeline did with a message. The values are part
// of the `deskmail ingest` contract.
type Action string

// The actions the pipeline reports.
const (
	ActionCreated         Action = "created"
	ActionAppended        Action = "appended"
	ActionReopened        Action = "reopened"
	ActionFollowupCreated Action = "followup_created"
	ActionDuplicate       Action = "duplicate"
	ActionIgnored         Action = "ignored"
	ActionBounce          Action = "bounce"
)

// Result is the outcome for one Raw message. When Err is non-nil the
// message was not stored (and must not be acknowledged to its source).
type Result struct {
	Name           string `json:"file"`
	MessageID      string `json:"message_id"`
	Action         Action `json:"action"`
	TicketID       *int64 `json:"ticket_id"`
	ConversationID *int64 `json:"conversation_id"`
	Status         *int   `json:"status"`
	ParentTicketID *int64 `json:"parent_ticket_id"`
	// RawID is the stored raw message row.
	RawID int64 `json:"-"`
	// Reason says why a message was ignored (kept raw only): it could
	// not be parsed, or what suppressed it.
	Reason string `json:"-"`
	Err    error  `json:"-"`
}
