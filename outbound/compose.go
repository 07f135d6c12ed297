package outbound

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/deskmail/deskmail/internal/lazyregexp"
	"github.com/deskmail/deskmail/locale"
	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
)

// maxReferences bounds the References header: the thread's first
// Message-ID is kept (RFC 5322 §3.6.4 and RFC 5256 use it to find the
// thread root) and the newest ones fill the rest.
const maxReferences = 10

// historyLimit bounds how many earlier messages an agent reply quotes.
const historyLimit = 5

// draft is one mail Enqueue decided to write.
type draft struct {
	kind     string
	ev       Event
	ch       *channel
	lang     string
	rcpt     []string
	to       *store.Agent // the agent a notification or command error goes to
	customer bool         // customer-facing: confirmation, agent reply, closing
	state    string       // "" (queued) or suppressed
	reason   string       // last_error: why suppressed, or who was left out
}

var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newMessageID makes our Message-ID for a mail about a ticket:
// deskmail.t<id>.<random>@<hostname>. It names the ticket so that a
// reply threads even when only In-Reply-To survives, and it is random
// so that it cannot be guessed.
func (o *Outbox) newMessageID(ticketID int64) (string, error) {
	var b [10]byte
	if _, err := io.ReadFull(o.random, b[:]); err != nil {
		return "", fmt.Errorf("random Message-ID: %w", err)
	}
	return "deskmail.t" + strconv.FormatInt(ticketID, 10) + "." + b32.EncodeToString(b[:]) + "@" + o.hostname, nil
}

// references returns In-Reply-To and References for a mail on a
// ticket: the chain of the ticket's recorded Message-IDs (oldest
// first), ending with the message answered, bounded to maxReferences
// with the first kept.
//
// Customer-facing mail carries only the customer's thread: the mail
// the customer side wrote and the mail we sent them — never what only
// agents received (notifications, command errors, an agent's own mail
// to us, private notes), so an agent's Message-ID and their machine's
// host name never reach the customer. When the message answered is not
// part of that thread (an agent's reply by mail answers our
// notification), the mail answers the latest message the customer
// saw: their last mail or our last mail to them.
func (o *Outbox) references(tx *store.Tx, tk *store.Ticket, inReplyTo string, customer bool) (string, []string, error) {
	var ids []string
	if customer {
		thread, err := tx.TicketThread(tk.ID)
		if err != nil {
			return "", nil, err
		}
		ids = make([]string, 0, len(thread))
		for _, m := range thread {
			if customerSaw(m, tk.Requester.Email) {
				ids = append(ids, m.MessageID)
			}
		}
	} else {
		// Agents get the whole thread: its ids are enough.
		var err error
		if ids, err = tx.TicketThreadIDs(tk.ID); err != nil {
			return "", nil, err
		}
	}
	inReplyTo = strings.Trim(strings.TrimSpace(inReplyTo), "<>")
	if customer && inReplyTo != "" && !slices.Contains(ids, inReplyTo) {
		inReplyTo = ""
	}
	var chain []string
	seen := map[string]bool{}
	for _, id := range ids {
		if id != "" && id != inReplyTo && !seen[id] && validMsgID(id) {
			seen[id] = true
			chain = append(chain, id)
		}
	}
	switch {
	case inReplyTo != "" && validMsgID(inReplyTo) && len(ids) > 0 && ids[0] == inReplyTo:
		// Answering the thread's root: it stays first (the root is what
		// clients and the bound below keep).
		chain = append([]string{inReplyTo}, chain...)
	case inReplyTo != "" && validMsgID(inReplyTo):
		// The message answered comes last (RFC 5322 §3.6.4).
		chain = append(chain, inReplyTo)
	default:
		inReplyTo = ""
		if len(chain) > 0 {
			inReplyTo = chain[len(chain)-1]
		}
	}
	if len(chain) > maxReferences {
		chain = append(chain[:1:1], chain[len(chain)-(maxReferences-1):]...)
	}
	return inReplyTo, chain, nil
}

// customerSaw reports whether the customer side of a ticket received
// the message m: our confirmations, agent replies and closing mail;
// mail the requester and cc's wrote; mail the team sent from the
// shared mailbox (its Sent folder). Not: notifications and command
// errors (agents only), private notes and auto-replies, and an agent's
// own mail to us — a reply by mail is sent on under our Message-ID
// (the conversation records that one, not the agent's), a forward by
// an agent opened the ticket without the customer seeing it.
func customerSaw(m store.ThreadMessage, requester string) bool {
	if m.Direction == "out" {
		return m.OutboxKind != KindNotification && m.OutboxKind != KindCommandError && m.OutboxKind != KindEscalation
	}
	if !m.HasConversation || m.Private || m.ConversationMessageID != m.MessageID {
		return false
	}
	return !m.Incoming || !m.FromAgent || strings.EqualFold(m.FromEmail, requester)
}

// validMsgID rejects ids that would break the header (spaces, <>,
// control characters) or have no @.
func validMsgID(id string) bool {
	if !strings.Contains(id, "@") || len(id) > 250 {
		return false
	}
	for _, r := range id {
		if r <= ' ' || r == '<' || r == '>' || r == 0x7f {
			return false
		}
	}
	return true
}

// subjects returns the ticket's base subject ("Printer broken"), the
// same with its token ("Printer broken [#12]") and the reply subject
// ("Re: Printer broken [#12]"): reply prefixes are not stacked and the
// token not repeated.
func (o *Outbox) subjects(tk *store.Ticket, lang string) (title, subject, reply string) {
	title = threading.BaseSubject(o.token.Strip(tk.Subject))
	title = threading.BaseSubject(o.token.Strip(title))
	if title == "" {
		title = locale.NoSubject(lang)
	}
	subject = o.token.Tag(title, tk.ID)
	return title, subject, "Re: " + subject
}

var spaces = lazyregexp.New(`\s+`)

// needsSpaceCleanup reports whether s holds a run of white space that
// spaces would replace with something else: a tab, newline, form feed
// or carriage return (\s in RE2, with the space), or two spaces in a
// row. Most rendered subjects hold none, and the regular expression
// then returns s as it was.
func needsSpaceCleanup(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\t', '\n', '\f', '\r':
			return true
		case ' ':
			if i+1 < len(s) && s[i+1] == ' ' {
				return true
			}
		}
	}
	return false
}

// finalSubject cleans a rendered subject and makes sure it carries the
// ticket token once.
func (o *Outbox) finalSubject(rendered, fallback string, id int64) string {
	s := rendered
	if needsSpaceCleanup(s) {
		s = spaces.ReplaceAllString(s, " ")
	}
	s = strings.TrimSpace(s)
	if s == "" {
		s = fallback
	}
	if got, ok := o.token.Find(s); ok && got == id {
		return s
	}
	return o.token.Tag(s, id)
}

// write renders a draft and writes it to the outbox.
func (o *Outbox) write(tx *store.Tx, d *draft) error {
	tk := d.ev.Ticket
	now := o.now()
	msgID, err := o.newMessageID(tk.ID)
	if err != nil {
		return err
	}
	if c := d.ev.Conversation; d.kind == KindAgentReply && c != nil && c.ID != 0 && !c.Incoming {
		// The reply the customer gets is ours, under our Message-ID: the
		// conversation records it, so the agent's own id (which still
		// maps to the ticket in the Message-ID index: replies to either
		// thread) is no part of the customer's thread, this mail's
		// References included.
		if err := tx.SetConversationMessageID(c.ID, msgID); err != nil {
			return err
		}
		c.MessageID = msgID
	}
	inReplyTo, refs, err := o.references(tx, tk, d.ev.InReplyTo, d.customer)
	if err != nil {
		return err
	}
	data, files, err := o.templateData(tx, d)
	if err != nil {
		return err
	}
	tmpl, err := o.tmpl.pair(d.ch.name, d.lang, d.kind)
	if err != nil {
		return err
	}
	subj, err := tmpl.subject(data)
	if err != nil {
		return err
	}
	subject := o.finalSubject(subj, data.ReplySubject, tk.ID)

	var h mail.Header
	h.SetDate(now)
	h.SetMessageID(msgID)
	h.SetSubject(subject)
	if err := o.addressHeaders(&h, d, tk); err != nil {
		return err
	}
	if inReplyTo != "" {
		h.SetMsgIDList("In-Reply-To", []string{inReplyTo})
	}
	h.SetMsgIDList("References", refs)
	switch d.kind {
	case KindAgentReply:
		// Human mail: no Auto-Submitted (see the package doc).
	case KindClosing:
		// Caused by a status change, not by a message (RFC 3834 §5.1).
		h.Set("Auto-Submitted", "auto-generated")
		h.Set("X-Auto-Response-Suppress", "All")
	default:
		h.Set("Auto-Submitted", "auto-replied")
		h.Set("X-Auto-Response-Suppress", "All")
	}
	h.Set("Content-Language", d.lang)
	var from string
	if d.state != store.OutboxSuppressed {
		if l, err := h.AddressList("From"); err == nil && len(l) > 0 {
			from = l[0].Address
		}
	}
	// The body is rendered from data alone, now or on another
	// goroutine while the transaction goes on (store.Tx.RenderLater):
	// data gets a copy of the ticket as it is now, which later changes
	// in the transaction do not touch; everything else render reads is
	// built for this mail alone.
	data.Ticket = snapshotTicket(tk)
	kind, state, chAddr := d.kind, d.state, d.ch.address
	render := func() ([]byte, error) {
		text, html, err := tmpl.body(data)
		if err != nil {
			return nil, err
		}
		if kind == KindAgentReply {
			html = o.ownContentIDs(files, html)
		}
		raw, err := buildMIME(h, msgID, text, html, files)
		if err != nil {
			return nil, fmt.Errorf("build %s mail: %w", kind, err)
		}
		if state != store.OutboxSuppressed {
			if raw, err = o.dkimSign(raw, from, chAddr); err != nil {
				return nil, fmt.Errorf("sign %s mail: %w", kind, err)
			}
		}
		return raw, nil
	}
	m := &store.OutboxMail{
		TicketID: &tk.ID, ChannelID: tk.ChannelID, Kind: d.kind, MailFrom: d.ch.address, RcptTo: d.rcpt,
		Subject: subject, MessageID: msgID, State: d.state, LastError: d.reason,
		CreatedAt: now, NextAttemptAt: now,
	}
	if d.ev.Conversation != nil && d.ev.Conversation.ID != 0 {
		id := d.ev.Conversation.ID
		m.ConversationID = &id
	}
	return tx.EnqueueOutboxLater(m, render)
}

// snapshotTicket copies a ticket with its lists, for a mail rendered
// later.
func snapshotTicket(tk *store.Ticket) *store.Ticket {
	c := *tk
	c.Tags = slices.Clone(tk.Tags)
	c.CcEmails = slices.Clone(tk.CcEmails)
	c.CustomFields = maps.Clone(tk.CustomFields)
	return &c
}

// addressHeaders sets From, Sender, To, Cc and Reply-To.
func (o *Outbox) addressHeaders(h *mail.Header, d *draft, tk *store.Ticket) error {
	ch := d.ch
	from := &mail.Address{Name: ch.display, Address: ch.address}
	var sender *mail.Address
	switch d.kind {
	case KindAgentReply:
		if a := d.ev.Agent; a != nil {
			if ch.send.ExposeAgent && a.Email != "" {
				// The agent's own address, as the channel asked; the
				// channel stays the Sender and the reply target.
				from = &mail.Address{Name: agentName(a), Address: a.Email}
				sender = &mail.Address{Name: ch.display, Address: ch.address}
			} else if n := agentName(a); n != "" {
				from.Name = n + " (" + ch.display + ")"
			}
		}
	case KindNotification:
		who := tk.Requester.Name
		if who == "" {
			who = tk.Requester.Email
		}
		if d.ev.Kind == NoteAdded && d.ev.Agent != nil {
			who = agentName(d.ev.Agent)
		}
		if who != "" {
			from.Name = fmt.Sprintf("%s via %s", who, ch.display)
		}
	}
	h.SetAddressList("From", []*mail.Address{from})
	if sender != nil {
		h.SetAddressList("Sender", []*mail.Address{sender})
	}
	var to, cc []*mail.Address
	for _, r := range d.rcpt {
		a := &mail.Address{Address: r}
		switch {
		case strings.EqualFold(r, tk.Requester.Email):
			a.Name = tk.Requester.Name
			to = append(to, a)
		case d.to != nil && strings.EqualFold(r, d.to.Email):
			a.Name = d.to.Name
			to = append(to, a)
		default:
			cc = append(cc, a)
		}
	}
	if len(to) == 0 {
		to, cc = cc, nil
	}
	h.SetAddressList("To", to)
	h.SetAddressList("Cc", cc)
	var token string
	if d.customer {
		token = o.signer.TicketToken(tk.ID)
	} else {
		agent := ""
		if d.to != nil {
			agent = d.to.Email
		} else if len(d.rcpt) > 0 {
			agent = d.rcpt[0]
		}
		token = o.signer.AgentToken(tk.ID, agent)
	}
	h.SetAddressList("Reply-To", []*mail.Address{{Name: ch.display, Address: threading.ReplyAddress(ch.address, token)}})
	return nil
}

// ownContentIDs gives the inline parts of an agent's reply Content-IDs
// of our own and points the HTML's cid: links at them: the ids the
// agent's mail client made name the agent's machine
// (part1.…@agent-laptop.local), and the customer must not see it.
// The new id derives from the old one, so the same mail is built the
// same way twice.
func (o *Outbox) ownContentIDs(files []file, html string) string {
	for i := range files {
		old := strings.Trim(strings.TrimSpace(files[i].contentID), "<>")
		if old == "" {
			continue
		}
		sum := sha256.Sum256([]byte(old))
		id := "part" + strconv.Itoa(i+1) + "." + hex.EncodeToString(sum[:8]) + "@" + o.hostname
		html = strings.ReplaceAll(html, "cid:"+old, "cid:"+id)
		files[i].contentID = id
	}
	return html
}

func agentName(a *store.Agent) string {
	if a == nil {
		return ""
	}
	if a.Name != "" {
		return a.Name
	}
	if at := strings.IndexByte(a.Email, '@'); at > 0 {
		return a.Email[:at]
	}
	return a.Email
}

// file is an attachment to mail.
type file struct {
	name, contentType, contentID string
	inline                       bool
	data                         []byte
}

// buildMIME writes the message: multipart/alternative (text, HTML),
// inside multipart/mixed when there are attachments. Text is UTF-8
// quoted-printable, attachments base64, header words RFC 2047-encoded
// by go-message. Boundaries derive from the Message-ID: unique per
// message, reproducible for golden files, and starting with "=_",
// which quoted-printable text can never contain.
//
// Mail without attachments (every confirmation and notification) is
// written by buildAlternative with go-message's textproto writers;
// mail with attachments by buildMixed with its message writers.
func buildMIME(h mail.Header, msgID, text, html string, files []file) ([]byte, error) {
	sum := sha256.Sum256([]byte(msgID))
	bnd := "=_dm" + hex.EncodeToString(sum[:10])
	// Room for the usual mail at once: quoted-printable text (a tenth
	// more than the text, for soft line breaks and a few escapes), the
	// headers, and base64 attachments; growing the buffer as the parts
	// are written copied each mail's bytes several times.
	size := (len(text)+len(html))*11/10 + 2048
	for _, f := range files {
		size += len(f.data)*4/3 + len(f.data)/38 + 512
	}
	var buf bytes.Buffer
	buf.Grow(size)
	// go-message writes header fields last-added first; build the top
	// header so that fields come out in the order they were set, with
	// MIME-Version and Content-Type at the end.
	var top message.Header
	if len(files) > 0 {
		top.SetContentType("multipart/mixed", map[string]string{"boundary": bnd + "_m"})
	} else {
		top.SetContentType("multipart/alternative", map[string]string{"boundary": bnd + "_a"})
	}
	top.Set("MIME-Version", "1.0")
	for f := h.Fields(); f.Next(); { // Fields runs in written order
		top.Add(f.Key(), f.Value())
	}
	if len(files) == 0 {
		if err := buildAlternative(&buf, top, bnd+"_a", text, html); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}
	if err := buildMixed(&buf, top, bnd, text, html, files); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// qpPartHeaders are the headers of the text and HTML parts, built once:
// textproto.WriteHeader only reads a header (it formats each field
// anew), so every mail may write the same ones.
var qpPartHeaders = func() [2]textproto.Header {
	var out [2]textproto.Header
	for i, ct := range []string{"text/plain", "text/html"} {
		var ph message.Header
		ph.SetContentType(ct, map[string]string{"charset": "utf-8"})
		ph.Set("Content-Transfer-Encoding", "quoted-printable")
		out[i] = ph.Header
	}
	return out
}()

// buildAlternative writes a multipart/alternative message of a text
// and an HTML part, both quoted-printable, with header top (its
// Content-Type naming boundary) — the bytes message.CreateWriter and
// CreatePart write (TestBuildAlternativeMatchesMessageWriter), without
// what they do for any message: copying each header, parsing each
// Content-Type back, a random boundary replaced at once.
func buildAlternative(buf *bytes.Buffer, top message.Header, boundary, text, html string) error {
	// As message.CreateWriter does for a multipart entity.
	top.Del("Content-Transfer-Encoding")
	if err := textproto.WriteHeader(buf, top.Header); err != nil {
		return err
	}
	mw := textproto.NewMultipartWriter(buf)
	if err := mw.SetBoundary(boundary); err != nil {
		return err
	}
	for i, body := range [2]string{text, html} {
		// The part's writer writes through to buf: its body is
		// appended to buf directly.
		if _, err := mw.CreatePart(qpPartHeaders[i]); err != nil {
			return err
		}
		appendQP(buf, body)
	}
	return mw.Close()
}

// buildMixed writes a multipart/mixed message with header top: the
// multipart/alternative text and HTML, then the files, base64.
func buildMixed(buf *bytes.Buffer, top message.Header, bnd, text, html string, files []file) error {
	mixed, err := message.CreateWriter(buf, top)
	if err != nil {
		return err
	}
	var ah message.Header
	ah.SetContentType("multipart/alternative", map[string]string{"boundary": bnd + "_a"})
	alt, err := mixed.CreatePart(ah)
	if err != nil {
		return err
	}
	for _, p := range []struct{ ct, body string }{{"text/plain", text}, {"text/html", html}} {
		var ph message.Header
		ph.SetContentType(p.ct, map[string]string{"charset": "utf-8"})
		ph.Set("Content-Transfer-Encoding", "quoted-printable")
		w, err := alt.CreatePart(ph)
		if err != nil {
			return err
		}
		if _, err := io.WriteString(w, p.body); err != nil {
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
	}
	if err := alt.Close(); err != nil {
		return err
	}
	for _, f := range files {
		var ah mail.AttachmentHeader
		ct := f.contentType
		if ct == "" || !strings.Contains(ct, "/") {
			ct = "application/octet-stream"
		}
		ah.SetContentType(ct, map[string]string{"name": f.name})
		disp := "attachment"
		if f.inline && f.contentID != "" {
			disp = "inline"
			ah.Set("Content-Id", "<"+strings.Trim(f.contentID, "<>")+">")
		}
		ah.SetContentDisposition(disp, map[string]string{"filename": f.name})
		ah.Set("Content-Transfer-Encoding", "base64")
		w, err := mixed.CreatePart(ah.Header)
		if err != nil {
			return err
		}
		if _, err := w.Write(f.data); err != nil {
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
	}
	return mixed.Close()
}

// TemplateData is what templates see. Text is plain; in HTML
// templates every string is escaped except Message.HTML, which is the
// sanitized HTML of the message.
type TemplateData struct {
	// Kind is the mail kind: confirmation, agent_reply,
	// notification, closing, command_error.
	Kind string
	// Event is what caused the mail (ticket_created, …).
	Event string
	// Lang is the language rendered: en, fr, de, es or one that
	// templates_dir adds.
	Lang string
	// TicketID and Token ("[#12]") identify the ticket.
	TicketID int64
	Token    string
	// Title is the ticket's subject without reply prefixes or token;
	// Subject the same with its token, ReplySubject with "Re: ".
	Title        string
	Subject      string
	ReplySubject string
	// Status and Priority are localized names.
	Status   string
	Priority string
	Ticket   *store.Ticket
	// Requester is the customer; Agent the agent who acted (if any);
	// Recipient the agent a notification or command error goes to.
	Requester Person
	Agent     *Person
	Recipient *Person
	Channel   ChannelInfo
	// Message is the message that caused the mail (the agent's reply
	// for agent_reply); nil for status changes.
	Message *Message
	// History is the ticket's earlier public messages, newest first
	// (agent replies with quote_history).
	History []Message
	// ErrorText is what was wrong with an agent's commands.
	ErrorText string
	// Breach is, for an escalation, the missed target
	// (first_response or resolution), its policy and localized due
	// time.
	Breach *BreachInfo
}

// BreachInfo is a missed SLA target as templates show it.
type BreachInfo struct {
	Target string
	Policy string
	DueAt  string
}

// Person is a name and address; Name falls back to "" (templates
// choose their own greeting).
type Person struct {
	Name  string
	Email string
}

// ChannelInfo is the channel a mail is sent for.
type ChannelInfo struct {
	Name        string
	Address     string
	DisplayName string
}

// Message is one message of the ticket as templates show it.
type Message struct {
	FromName  string
	FromEmail string
	// Date is localized ("2 mars 2026 à 10:04 UTC").
	Date string
	// Text is the message's visible text.
	Text string
	// HTML is the message as HTML: its sanitized HTML when the
	// visible text is the whole message, else Text escaped.
	HTML        htmltemplate.HTML
	Attachments []string
	Private     bool
}

func (o *Outbox) templateData(tx *store.Tx, d *draft) (*TemplateData, []file, error) {
	tk := d.ev.Ticket
	title, subject, reply := o.subjects(tk, d.lang)
	data := &TemplateData{
		Kind: d.kind, Event: string(d.ev.Kind), Lang: d.lang,
		TicketID: tk.ID, Token: o.token.Format(tk.ID), Title: title, Subject: subject, ReplySubject: reply,
		Status: statusName(d.lang, tk), Priority: priorityName(d.lang, tk.Priority), Ticket: tk,
		Requester: Person{Name: tk.Requester.Name, Email: tk.Requester.Email},
		Channel:   ChannelInfo{Name: d.ch.name, Address: d.ch.address, DisplayName: d.ch.display},
		ErrorText: d.ev.ErrorText,
	}
	if a := d.ev.Agent; a != nil {
		data.Agent = &Person{Name: agentName(a), Email: a.Email}
	}
	if d.to != nil {
		data.Recipient = &Person{Name: agentName(d.to), Email: d.to.Email}
	}
	if b := d.ev.Breach; b != nil {
		data.Breach = &BreachInfo{Target: b.Target, Policy: b.Policy, DueAt: formatDate(d.lang, b.DueAt)}
	}
	if c := d.ev.Conversation; c != nil {
		m := templateMessage(c, d.lang)
		data.Message = &m
	}
	var files []file
	if d.kind == KindAgentReply && d.ev.Conversation != nil {
		for _, f := range d.ev.Conversation.Files {
			content := f.Content
			if content == nil && f.ID != 0 {
				a, err := tx.AttachmentContent(f.ID)
				if err != nil {
					return nil, nil, err
				}
				content = a.Content
			}
			name := f.Filename
			if name == "" {
				name = f.OriginalFilename
			}
			files = append(files, file{name: name, contentType: f.ContentType, contentID: f.ContentID, inline: f.Inline, data: content})
		}
		if on(d.ch.send.QuoteHistory, true) {
			convs, err := tx.Conversations(tk.ID)
			if err != nil {
				return nil, nil, err
			}
			for i := len(convs) - 1; i >= 0 && len(data.History) < historyLimit; i-- {
				c := convs[i]
				if c.ID == d.ev.Conversation.ID || c.Private || c.Kind != "reply" {
					continue
				}
				data.History = append(data.History, templateMessage(&c, d.lang))
			}
		}
	}
	return data, files, nil
}

// templateMessage turns a conversation into what templates show.
func templateMessage(c *store.Conversation, lang string) Message {
	text := strings.TrimSpace(c.ReplyText)
	whole := false
	if text == "" {
		text = strings.TrimSpace(c.BodyText)
		whole = true
	} else if strings.TrimSpace(c.BodyText) == text {
		whole = true
	}
	m := Message{FromName: c.FromName, FromEmail: c.FromEmail, Date: formatDate(lang, c.CreatedAt), Text: text, Private: c.Private}
	if whole && strings.TrimSpace(c.BodyHTML) != "" {
		// Sanitized when the conversation was stored.
		m.HTML = htmltemplate.HTML(c.BodyHTML)
	} else {
		m.HTML = textToHTML(text)
	}
	for _, f := range c.Files {
		if !f.Inline {
			m.Attachments = append(m.Attachments, f.Filename)
		}
	}
	return m
}

// textToHTML escapes text and keeps its paragraphs and line breaks:
// each run of text between blank lines ("\n\n") that holds more than
// white space becomes a <p>, its line breaks <br>. It writes into one
// buffer sized for the text (the customer's message in every agent
// notification: growing the buffer by doubling, and a slice of lines
// per paragraph, were 2% of deskmail serve's CPU under SMTP load).
func textToHTML(text string) htmltemplate.HTML {
	text = strings.ReplaceAll(text, "\r\n", "\n")
	var b strings.Builder
	b.Grow(len(text) + len(text)/8 + 64)
	for i := 0; len(text) > 0 || i == 0; i++ {
		para, rest, _ := strings.Cut(text, "\n\n")
		text = rest
		if strings.TrimSpace(para) == "" {
			if len(text) == 0 {
				break
			}
			continue
		}
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString("<p>")
		for j := 0; ; j++ {
			line, more, found := strings.Cut(para, "\n")
			if j > 0 {
				b.WriteString("<br>\n")
			}
			b.WriteString(htmltemplate.HTMLEscapeString(line))
			if !found {
				break
			}
			para = more
		}
		b.WriteString("</p>")
	}
	return htmltemplate.HTML(b.String())
}

var errNoTemplate = errors.New("no template")

func statusName(lang string, tk *store.Ticket) string {
	if tk.Status >= 6 && tk.StatusName != "" {
		return tk.StatusName // custom statuses are named by the operator
	}
	if n := locale.StatusName(lang, tk.Category); n != "" {
		return n
	}
	if tk.StatusName != "" {
		return tk.StatusName
	}
	return strconv.Itoa(tk.Status)
}

func priorityName(lang string, p int) string { return locale.PriorityName(lang, p) }

// formatDate writes a date in the mail's language, in UTC (deskmail
// has no per-customer time zone yet).
func formatDate(lang string, t time.Time) string { return locale.Date(lang, t) }
