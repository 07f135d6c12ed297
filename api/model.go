package api

import (
	"html"
	"strconv"
	"strings"
	"time"

	"github.com/deskmail/deskmail/store"
)

// The response bodies, in Freshdesk's field names. Fields deskmail has
// no value for are null or empty ([] / {}), never missing. deskmail's
// own additions (status_name, status_category, group_name, channel,
// pipeline_id, parent_ticket_id, kind, message_id) use names Freshdesk
// does not.

// Ticket is a ticket as the API shows it.
type Ticket struct {
	ID              int64          `json:"id"`
	Subject         string         `json:"subject"`
	Description     *string        `json:"description,omitempty"`
	DescriptionText *string        `json:"description_text,omitempty"`
	Status          int            `json:"status"`
	Priority        int            `json:"priority"`
	Source          int            `json:"source"`
	Type            *string        `json:"type"`
	GroupID         *int64         `json:"group_id"`
	ResponderID     *int64         `json:"responder_id"`
	RequesterID     int64          `json:"requester_id"`
	CompanyID       *int64         `json:"company_id"`
	ProductID       *int64         `json:"product_id"`
	EmailConfigID   *int64         `json:"email_config_id"`
	CcEmails        []string       `json:"cc_emails"`
	FwdEmails       []string       `json:"fwd_emails"`
	ReplyCcEmails   []string       `json:"reply_cc_emails"`
	ToEmails        []string       `json:"to_emails"`
	FrEscalated     bool           `json:"fr_escalated"`
	IsEscalated     bool           `json:"is_escalated"`
	Spam            bool           `json:"spam"`
	DueBy           *string        `json:"due_by"`
	FrDueBy         *string        `json:"fr_due_by"`
	Tags            []string       `json:"tags"`
	CustomFields    map[string]any `json:"custom_fields"`
	CreatedAt       string         `json:"created_at"`
	UpdatedAt       string         `json:"updated_at"`
	Deleted         bool           `json:"deleted"`
	// Attachments are the description's files (view only).
	Attachments *[]Attachment `json:"attachments,omitempty"`

	StatusName     string  `json:"status_name"`
	StatusCategory string  `json:"status_category"`
	GroupName      *string `json:"group_name"`
	Channel        *string `json:"channel"`
	PipelineID     *int64  `json:"pipeline_id"`
	ParentTicketID *int64  `json:"parent_ticket_id"`

	Stats         *Stats          `json:"stats,omitempty"`
	Requester     *Requester      `json:"requester,omitempty"`
	Conversations *[]Conversation `json:"conversations,omitempty"`
}

// Stats are a ticket's timestamps (include=stats).
type Stats struct {
	FirstRespondedAt     *string `json:"first_responded_at"`
	AgentRespondedAt     *string `json:"agent_responded_at"`
	RequesterRespondedAt *string `json:"requester_responded_at"`
	StatusUpdatedAt      *string `json:"status_updated_at"`
	ResolvedAt           *string `json:"resolved_at"`
	ClosedAt             *string `json:"closed_at"`
	PendingSince         *string `json:"pending_since"`
	ReopenedAt           *string `json:"reopened_at"`
}

// Requester is the requester summary (include=requester).
type Requester struct {
	ID     int64   `json:"id"`
	Name   string  `json:"name"`
	Email  string  `json:"email"`
	Mobile *string `json:"mobile"`
	Phone  *string `json:"phone"`
}

// Conversation is a reply or note.
type Conversation struct {
	ID               int64        `json:"id"`
	Body             string       `json:"body"`
	BodyText         string       `json:"body_text"`
	Incoming         bool         `json:"incoming"`
	Private          bool         `json:"private"`
	UserID           *int64       `json:"user_id"`
	SupportEmail     *string      `json:"support_email"`
	Source           int          `json:"source"`
	TicketID         int64        `json:"ticket_id"`
	ToEmails         []string     `json:"to_emails"`
	FromEmail        *string      `json:"from_email"`
	CcEmails         []string     `json:"cc_emails"`
	BccEmails        []string     `json:"bcc_emails"`
	Attachments      []Attachment `json:"attachments"`
	CreatedAt        string       `json:"created_at"`
	UpdatedAt        string       `json:"updated_at"`
	LastEditedAt     *string      `json:"last_edited_at"`
	LastEditedUserID *int64       `json:"last_edited_user_id"`

	Kind      string `json:"kind"`
	MessageID string `json:"message_id"`
}

// Note is the answer to creating a note: the conversation and, as in
// Freshdesk, notified_to — the agents notify_emails named, who were
// told besides the assigned agent.
type Note struct {
	Conversation
	NotifiedTo []string `json:"notified_to"`
}

// Attachment is a file's metadata; attachment_url downloads it.
type Attachment struct {
	ID            int64  `json:"id"`
	Name          string `json:"name"`
	ContentType   string `json:"content_type"`
	Size          int64  `json:"size"`
	Inline        bool   `json:"inline"`
	AttachmentURL string `json:"attachment_url"`
	CreatedAt     string `json:"created_at"`
	UpdatedAt     string `json:"updated_at"`
}

// Contact is a customer.
type Contact struct {
	ID           int64          `json:"id"`
	Name         string         `json:"name"`
	Email        string         `json:"email"`
	Active       bool           `json:"active"`
	Address      *string        `json:"address"`
	CompanyID    *int64         `json:"company_id"`
	Description  *string        `json:"description"`
	JobTitle     *string        `json:"job_title"`
	Language     string         `json:"language"`
	Mobile       *string        `json:"mobile"`
	Phone        *string        `json:"phone"`
	TimeZone     *string        `json:"time_zone"`
	TwitterID    *string        `json:"twitter_id"`
	OtherEmails  []string       `json:"other_emails"`
	Tags         []string       `json:"tags"`
	CustomFields map[string]any `json:"custom_fields"`
	CreatedAt    string         `json:"created_at"`
	UpdatedAt    string         `json:"updated_at"`

	// Deleted is set while the contact is soft-deleted (DELETE; PUT
	// …/restore clears it).
	Deleted bool `json:"deleted"`

	// deskmail extensions: the bouncing flag and why it is set
	// (cleared with PUT {"bouncing": false}).
	Bouncing     bool    `json:"bouncing"`
	BouncedAt    *string `json:"bounced_at"`
	BounceStatus *string `json:"bounce_status"`
	BounceReason *string `json:"bounce_reason"`
}

// Agent is the caller (GET /api/v2/agents/me).
type Agent struct {
	ID          int64        `json:"id"`
	Available   bool         `json:"available"`
	Occasional  bool         `json:"occasional"`
	TicketScope int          `json:"ticket_scope"`
	Type        string       `json:"type"`
	Role        string       `json:"role"`
	Contact     AgentContact `json:"contact"`
}

// AgentContact is an agent's name and address.
type AgentContact struct {
	Name   string `json:"name"`
	Email  string `json:"email"`
	Active bool   `json:"active"`
}

// timeLayout is Freshdesk's timestamp form (UTC, seconds).
const timeLayout = "2006-01-02T15:04:05Z"

func fmtTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func fmtPtr(t *time.Time) *string {
	if t == nil || t.IsZero() {
		return nil
	}
	s := fmtTime(*t)
	return &s
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (s *server) groupID(name *string) *int64 {
	if name == nil {
		return nil
	}
	for i, g := range s.groups {
		if g == *name {
			id := int64(i + 1)
			return &id
		}
	}
	return nil
}

// ticketJSON maps a stored ticket; descr, when non-nil, is the first
// conversation (the description).
func (s *server) ticketJSON(tk *store.Ticket, descr *store.Conversation, base string) Ticket {
	t := Ticket{
		ID: tk.ID, Subject: tk.Subject, Status: tk.Status, Priority: tk.Priority, Source: tk.Source,
		Type: tk.Type, GroupID: s.groupID(tk.Group), ResponderID: tk.ResponderID, RequesterID: tk.RequesterID,
		EmailConfigID: tk.ChannelID, CcEmails: nonNil(tk.CcEmails), FwdEmails: []string{}, ReplyCcEmails: nonNil(tk.CcEmails),
		ToEmails: []string{}, Tags: nonNil(tk.Tags), CustomFields: customFieldsJSON(tk.CustomFields),
		CreatedAt: fmtTime(tk.CreatedAt), UpdatedAt: fmtTime(tk.UpdatedAt), Deleted: tk.Deleted,
		StatusName: tk.StatusName, StatusCategory: tk.Category, GroupName: tk.Group, Channel: tk.Channel,
		PipelineID: tk.PipelineID, ParentTicketID: tk.ParentID,
		DueBy: fmtPtr(tk.DueBy), FrDueBy: fmtPtr(tk.FrDueBy), FrEscalated: tk.FrEscalated, IsEscalated: tk.IsEscalated,
	}
	if descr != nil {
		c := conversationJSON(descr, base)
		t.Description, t.DescriptionText, t.Attachments = &c.Body, &c.BodyText, &c.Attachments
	}
	return t
}

func statsJSON(tk *store.Ticket) *Stats {
	st := &Stats{
		FirstRespondedAt: fmtPtr(tk.FirstRespondedAt), AgentRespondedAt: fmtPtr(tk.AgentRespondedAt),
		RequesterRespondedAt: fmtPtr(tk.RequesterRespondedAt), StatusUpdatedAt: fmtPtr(tk.StatusUpdatedAt),
		ResolvedAt: fmtPtr(tk.ResolvedAt), ClosedAt: fmtPtr(tk.ClosedAt),
	}
	if tk.Category == "pending" {
		st.PendingSince = st.StatusUpdatedAt
	}
	return st
}

func requesterJSON(tk *store.Ticket) *Requester {
	return &Requester{ID: tk.RequesterID, Name: tk.Requester.Name, Email: tk.Requester.Email}
}

// bodyHTML is the stored HTML, or the text escaped with line breaks.
func bodyHTML(c *store.Conversation) string {
	if strings.TrimSpace(c.BodyHTML) != "" {
		return c.BodyHTML
	}
	text := strings.TrimSpace(c.BodyText)
	if text == "" {
		return ""
	}
	return "<div>" + strings.ReplaceAll(html.EscapeString(text), "\n", "<br>") + "</div>"
}

func conversationJSON(c *store.Conversation, base string) Conversation {
	out := Conversation{
		ID: c.ID, Body: bodyHTML(c), BodyText: strings.TrimSpace(c.BodyText), Incoming: c.Incoming, Private: c.Private,
		TicketID: c.TicketID, ToEmails: nonNil(c.ToEmails), CcEmails: nonNil(c.CcEmails), BccEmails: []string{},
		Attachments: make([]Attachment, 0, len(c.Files)), CreatedAt: fmtTime(c.CreatedAt), UpdatedAt: fmtTime(c.UpdatedAt),
		Kind: c.Kind, MessageID: c.MessageID,
	}
	switch c.Kind {
	case "note":
		out.Source = 2
	case "forward":
		out.Source = 6
	}
	if c.AgentID != nil {
		out.UserID = c.AgentID
	} else {
		out.UserID = c.ContactID
	}
	if c.FromEmail != "" {
		from := c.FromEmail
		out.FromEmail = &from
	}
	if !c.UpdatedAt.Equal(c.CreatedAt) {
		out.LastEditedAt = fmtPtr(&c.UpdatedAt)
	}
	for _, f := range c.Files {
		out.Attachments = append(out.Attachments, Attachment{
			ID: f.ID, Name: f.Filename, ContentType: f.ContentType, Size: f.Size, Inline: f.Inline,
			AttachmentURL: base + "/api/v2/attachments/" + strconv.FormatInt(f.ID, 10),
			CreatedAt:     out.CreatedAt, UpdatedAt: out.CreatedAt,
		})
	}
	return out
}

func contactJSON(c *store.Contact) Contact {
	lang := c.Language
	if lang == "" {
		lang = "en"
	}
	return Contact{
		ID: c.ID, Name: c.Name, Email: c.Email, Active: true, Language: lang,
		Phone: nonEmpty(c.Phone), TimeZone: nonEmpty(c.TimeZone), Deleted: c.DeletedAt != nil,
		OtherEmails: []string{}, Tags: nonNil(c.Tags), CustomFields: map[string]any{},
		CreatedAt: fmtTime(c.CreatedAt), UpdatedAt: fmtTime(c.UpdatedAt), Bouncing: c.Bouncing, BouncedAt: fmtPtr(c.BouncedAt),
		BounceStatus: nonEmpty(c.BounceStatus), BounceReason: nonEmpty(c.BounceReason),
	}
}

// nonEmpty is s, or nil (JSON null) when s is empty.
func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func agentJSON(a *store.Agent) Agent {
	t := "support_agent"
	return Agent{ID: a.ID, Available: a.Active, TicketScope: 1, Type: t, Role: a.Role,
		Contact: AgentContact{Name: a.Name, Email: a.Email, Active: a.Active}}
}

// customFieldsJSON shows a ticket's custom fields (never null).
func customFieldsJSON(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
