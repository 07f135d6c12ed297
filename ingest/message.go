// Package ingest turns raw mail into tickets: it parses a message
// (MIME, charsets, attachments, HTML sanitizing), classifies it
// (normal, auto-reply, bounce, list), extracts the visible reply, and
// drives each message through threading into the store in one
// transaction. The SMTP receiver and IMAP pollers live in
// subpackages and feed the same Pipeline.
package ingest

import "time"

// Kind classifies a message for the ticket rules.
type Kind string

// The kinds of message deskmail distinguishes.
const (
	KindNormal    Kind = "normal"
	KindAutoReply Kind = "auto_reply"
	KindBounce    Kind = "bounce"
	KindList      Kind = "list"
)

// Address is one mailbox: an optional display name and an address.
// Address is lower-cased only in the domain part; comparisons should
// use strings.EqualFold.
type Address struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

// Attachment describes one attachment or inline part. Content holds
// the decoded bytes; it is not printed by `deskmail parse`.
type Attachment struct {
	// Filename is safe to use as a file name: no path separators, no
	// control characters, at most 255 bytes.
	Filename string `json:"filename"`
	// OriginalFilename is the name as the sender gave it, for display.
	OriginalFilename string `json:"-"`
	ContentType      string `json:"content_type"`
	Size             int    `json:"size"`
	Inline           bool   `json:"inline"`
	ContentID        string `json:"content_id"`
	Content          []byte `json:"-"`
}

// Bounce holds what a delivery status notification says about the
// message that bounced. It is set only when Kind is KindBounce.
type Bounce struct {
	// OriginalMessageID is the Message-ID of the mail that bounced,
	// without angle brackets, when the report names it.
	OriginalMessageID string `json:"original_message_id"`
	// Recipients are the final recipients that failed.
	Recipients []string `json:"recipients"`
	// Status is the first enhanced status code (for example 5.1.1).
	Status string `json:"status"`
	// Permanent is true for a 5.x.x failure.
	Permanent bool `json:"permanent"`
}

// Message is a parsed, normalized mail. Its JSON form is the output of
// `deskmail parse` (a fixed contract: keys are never omitted; absent
// values are null or []).
type Message struct {
	// MessageID is the Message-ID without angle brackets. A message
	// without one gets a stable ID derived from its content, and a
	// warning.
	MessageID  string    `json:"message_id"`
	InReplyTo  []string  `json:"in_reply_to"`
	References []string  `json:"references"`
	From       *Address  `json:"from"`
	ReplyTo    []Address `json:"reply_to"`
	To         []Address `json:"to"`
	Cc         []Address `json:"cc"`
	Subject    string    `json:"subject"`
	// Date is nil when the header is missing or unparseable; the
	// pipeline then uses the arrival time.
	Date *time.Time `json:"date"`
	// Text is the full plain-text body (derived from HTML when the
	// mail has no text part).
	Text string `json:"text"`
	// HTML is the sanitized HTML body, empty when there is none.
	HTML string `json:"html"`
	// ReplyText is only the new text: quoted history and signature
	// removed.
	ReplyText   string       `json:"reply_text"`
	Attachments []Attachment `json:"attachments"`
	Kind        Kind         `json:"kind"`
	Warnings    []string     `json:"warnings"`

	// Fields below are not part of the parse contract.

	// Bounce is set for bounces.
	Bounce *Bounce `json:"-"`
	// Headers keeps the top-level header fields that later stages
	// read (Authentication-Results, Auto-Submitted, Received, ...),
	// keys in canonical MIME form.
	Headers map[string][]string `json:"-"`
	// GeneratedID is true when MessageID was derived from content.
	GeneratedID bool `json:"-"`
	// ContentHash is the hex SHA-256 of the raw message.
	ContentHash string `json:"-"`
}
