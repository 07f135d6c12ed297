package outbound

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
)

// EventKind names a change that may cause mail. The values are those
// of threading.EventKind, plus command_error.
type EventKind string

// The events Enqueue understands.
const (
	TicketCreated   EventKind = "ticket_created"
	CustomerReplied EventKind = "customer_replied"
	AgentReplied    EventKind = "agent_replied"
	TicketResolved  EventKind = "ticket_resolved"
	TicketClosed    EventKind = "ticket_closed"
	CommandError    EventKind = "command_error"
	NoteAdded       EventKind = "note_added"
	// SLABreached: a ticket missed an SLA target (Event.Breach).
	SLABreached EventKind = "sla_breached"
	// StatusChanged causes no mail (resolved and closed have their
	// own events); it is accepted so that every ticket event may be
	// handed to Enqueue.
	StatusChanged EventKind = "status_changed"
)

// Mail kinds, as stored in the outbox's kind column.
const (
	KindConfirmation = "confirmation"
	KindAgentReply   = "agent_reply"
	KindNotification = "notification"
	KindClosing      = "closing"
	KindCommandError = "command_error"
	KindEscalation   = "escalation"
)

// Event is one change handed to Enqueue.
type Event struct {
	Kind EventKind
	// Ticket is the ticket after the change.
	Ticket *store.Ticket
	// Conversation is the message that caused the change (nil for
	// status-only changes); for agent_replied it is the agent's
	// outgoing public reply whose text and attachments are mailed.
	Conversation *store.Conversation
	// Channel is the channel name ("" means the ticket's channel).
	Channel string
	// InReplyTo is the Message-ID (no <>) of the mail being answered.
	InReplyTo string
	// Quiet means an import of old mail: nothing is sent.
	Quiet bool
	// Agent is the agent who acted (agent_replied, command_error,
	// note_added).
	Agent *store.Agent
	// ErrorText is, for command_error, what was wrong, quoting the
	// offending line.
	ErrorText string
	// Recipient is, for command_error, the agent to tell (default
	// Agent.Email).
	Recipient string
	// SuppressReason, set when the triggering mail was an
	// auto-reply, bounce, list mail or loop, means nothing is sent to
	// the requester (agents are still notified).
	SuppressReason string
	// Breach is, for sla_breached, the missed target.
	Breach *Breach
	// NotifyAlso are, for note_added, the agents the note names
	// (notify_emails): each active one is told besides the assigned
	// agent, whatever the channel's group, once, and never the author.
	NotifyAlso []string
}

// Breach is a missed SLA target, as an escalation mail tells it.
type Breach struct {
	// Target is first_response or resolution.
	Target string
	Policy string
	DueAt  time.Time
}

// Outbox is the outbound side: it turns events into outbox rows and
// builds the Worker that delivers them. It is read-only after New and
// safe for concurrent use.
type Outbox struct {
	cfg      *config.Config
	signer   *threading.Signer
	token    *threading.SubjectToken
	channels map[string]*channel
	first    *channel
	own      map[string]bool   // our support addresses, lower case
	groups   map[string]string // agent address (lower case) → group
	tmpl     *templates
	hostname string
	perHour  int
	// dkim holds a signing entry per lower-case domain.
	dkim map[string]*dkim.SignOptions

	now    func() time.Time
	random io.Reader
}

// channel is what Outbox needs of a configured channel.
type channel struct {
	name, address, display, lang, group string
	send                                config.SendConfig
}

// New builds the outbound side from the configuration: it checks the
// channels and compiles every template (built-in and overrides), so a
// broken template is reported at start, not when the first mail is due.
func New(cfg *config.Config, signer *threading.Signer) (*Outbox, error) {
	if cfg == nil {
		return nil, errors.New("outbound: no configuration")
	}
	if signer == nil {
		return nil, errors.New("outbound: no signer")
	}
	tok, err := threading.NewSubjectToken(cfg.Threading.SubjectToken)
	if err != nil {
		return nil, fmt.Errorf("outbound: %w", err)
	}
	o := &Outbox{
		cfg: cfg, signer: signer, token: tok,
		channels: map[string]*channel{}, own: map[string]bool{}, groups: map[string]string{},
		hostname: cfg.Threading.Hostname, perHour: cfg.Outbound.ConfirmationsPerHour,
		now: time.Now, random: rand.Reader,
	}
	if o.hostname == "" {
		o.hostname = "deskmail.local"
	}
	if o.perHour <= 0 {
		o.perHour = 5
	}
	var names []string
	for _, c := range cfg.Channels {
		if len(c.Addresses) == 0 {
			return nil, fmt.Errorf("outbound: channel %q has no address to send from", c.Name)
		}
		ch := &channel{name: c.Name, address: c.Addresses[0], display: c.DisplayName, lang: c.Language, group: c.Group, send: c.Send}
		if ch.display == "" {
			ch.display = "Support"
		}
		o.channels[c.Name] = ch
		if o.first == nil {
			o.first = ch
		}
		for _, a := range c.Addresses {
			o.own[strings.ToLower(a)] = true
		}
		names = append(names, c.Name)
	}
	if o.first == nil {
		return nil, errors.New("outbound: no channel configured")
	}
	for _, a := range cfg.Agents {
		o.groups[strings.ToLower(a.Email)] = a.Group
	}
	o.tmpl, err = loadTemplates(cfg.Outbound.TemplatesDir, names)
	if err != nil {
		return nil, fmt.Errorf("outbound: %w", err)
	}
	for _, ch := range o.channels {
		if ch.lang = strings.ToLower(ch.lang); !o.tmpl.has(ch.lang) {
			ch.lang = "en"
		}
	}
	if o.dkim, err = loadDKIM(cfg.Outbound.DKIM); err != nil {
		return nil, fmt.Errorf("outbound: %w", err)
	}
	return o, nil
}

// on reads a per-channel switch with its default.
func on(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

// Enqueue decides what mail the event causes, renders it and writes it
// to the outbox in tx. It must be called inside the transaction of the
// change, so the mail is committed (or rolled back) with it. A nil
// error with nothing written is normal: switched off, quiet, or no
// one to send to.
func (o *Outbox) Enqueue(tx *store.Tx, ev Event) error {
	if ev.Ticket == nil {
		return fmt.Errorf("outbound: %s event without a ticket", ev.Kind)
	}
	if ev.Quiet {
		return nil
	}
	ch := o.channelOf(ev)
	var err error
	switch ev.Kind {
	case TicketCreated:
		if on(ch.send.Confirmation, true) {
			err = o.toRequester(tx, ev, ch, KindConfirmation)
		}
		if err == nil && on(ch.send.Notification, true) {
			err = o.notifyAgents(tx, ev, ch)
		}
	case CustomerReplied:
		if on(ch.send.Notification, true) {
			err = o.notifyAgents(tx, ev, ch)
		}
	case NoteAdded:
		if on(ch.send.Notification, true) {
			err = o.notifyAgents(tx, ev, ch)
		}
	case AgentReplied:
		if ev.Conversation == nil {
			return fmt.Errorf("outbound: agent_replied on ticket %d without the reply", ev.Ticket.ID)
		}
		if on(ch.send.AgentReply, true) {
			err = o.toRequester(tx, ev, ch, KindAgentReply)
		}
	case TicketResolved, TicketClosed:
		if on(ch.send.ClosingMail, false) {
			err = o.toRequester(tx, ev, ch, KindClosing)
		}
	case CommandError:
		err = o.commandError(tx, ev, ch)
	case StatusChanged:
		return nil
	case SLABreached:
		if ev.Breach == nil {
			return fmt.Errorf("outbound: sla_breached on ticket %d without the breach", ev.Ticket.ID)
		}
		err = o.escalate(tx, ev, ch)
	default:
		return fmt.Errorf("outbound: unknown event %q on ticket %d", ev.Kind, ev.Ticket.ID)
	}
	if err != nil {
		return fmt.Errorf("outbound: %s on ticket %d: %w", ev.Kind, ev.Ticket.ID, err)
	}
	return nil
}

func (o *Outbox) channelOf(ev Event) *channel {
	if ch, ok := o.channels[ev.Channel]; ok {
		return ch
	}
	if ev.Ticket.Channel != nil {
		if ch, ok := o.channels[*ev.Ticket.Channel]; ok {
			return ch
		}
	}
	return o.first
}

// isOwn reports whether addr is one of our support addresses, in any
// plus-addressed form.
func (o *Outbox) isOwn(addr string) bool {
	a := strings.ToLower(strings.TrimSpace(addr))
	if o.own[a] {
		return true
	}
	base, tag := threading.SplitAddress(a)
	return tag != "" && o.own[base]
}

// automatedLocal are local parts that never read mail (RFC 3834 §2
// asks responders not to answer them).
var automatedLocal = []string{"noreply", "no-reply", "no_reply", "donotreply", "do-not-reply", "do_not_reply",
	"mailer-daemon", "postmaster", "bounce", "bounces", "mailerdaemon", "listserv", "majordomo"}

func isAutomated(addr string) bool {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return true
	}
	local := strings.ToLower(addr[:at])
	if i := strings.IndexByte(local, '+'); i >= 0 {
		local = local[:i]
	}
	for _, a := range automatedLocal {
		if local == a || strings.HasPrefix(local, a+"-") || strings.HasPrefix(local, a+".") {
			return true
		}
	}
	return strings.HasSuffix(local, "-bounces") || strings.HasSuffix(local, "-noreply")
}

// blocked says why mail must not go to addr ("" when it may).
func (o *Outbox) blocked(tx *store.Tx, addr string) (string, error) {
	switch {
	case !strings.Contains(addr, "@"):
		return "not an address", nil
	case o.isOwn(addr):
		return "own support address", nil
	case isAutomated(addr):
		return "automated sender address", nil
	}
	c, err := tx.ContactByEmail(addr)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if c.Bouncing {
		return "address is bouncing", nil
	}
	return "", nil
}

// toRequester enqueues customer-facing mail: a confirmation, an agent
// reply (to the requester and cc's) or a closing mail.
func (o *Outbox) toRequester(tx *store.Tx, ev Event, ch *channel, kind string) error {
	tk := ev.Ticket
	var want []string
	seen := map[string]bool{}
	add := func(a string) {
		a = strings.TrimSpace(a)
		if a != "" && !seen[strings.ToLower(a)] {
			seen[strings.ToLower(a)] = true
			want = append(want, a)
		}
	}
	add(tk.Requester.Email)
	if kind == KindAgentReply {
		for _, a := range tk.CcEmails {
			add(a)
		}
		if ev.Conversation != nil {
			for _, a := range ev.Conversation.CcEmails {
				if !o.isAgent(a) {
					add(a)
				}
			}
		}
	}
	if len(want) == 0 {
		return nil
	}
	var rcpt, dropped []string
	for _, a := range want {
		why, err := o.blocked(tx, a)
		if err != nil {
			return err
		}
		if why != "" {
			dropped = append(dropped, a+": "+why)
			continue
		}
		rcpt = append(rcpt, a)
	}
	reason := ""
	switch {
	case ev.SuppressReason != "":
		reason = "triggering mail was " + ev.SuppressReason
		rcpt = nil
	case len(rcpt) == 0:
		reason = strings.Join(dropped, "; ")
	case kind == KindConfirmation:
		n, err := tx.CountOutboxTo(KindConfirmation, rcpt[0], o.now().Add(-confirmationWindow))
		if err != nil {
			return err
		}
		if n >= o.perHour {
			reason = fmt.Sprintf("rate limit: %d confirmations to %s in the last hour (limit %d)", n, rcpt[0], o.perHour)
			rcpt = nil
		}
	}
	lang := o.requesterLang(tx, tk, ch)
	m := &draft{kind: kind, ev: ev, ch: ch, lang: lang, customer: true}
	if reason != "" {
		m.rcpt, m.state, m.reason = want, store.OutboxSuppressed, reason
	} else {
		m.rcpt = rcpt
		if len(dropped) > 0 {
			m.reason = "not sent to " + strings.Join(dropped, "; ")
		}
	}
	return o.write(tx, m)
}

// confirmationWindow is how far back the confirmations to an address
// count towards its hourly limit.
const confirmationWindow = time.Hour

// Prefetch reads in tx, in one query, what Enqueue will look up about
// mail already sent to these addresses (a batch's senders): the
// confirmations of the last hour, which the rate limit counts.
func (o *Outbox) Prefetch(tx *store.Tx, addrs []string) error {
	return tx.PrefetchOutboxTo(KindConfirmation, addrs, o.now().Add(-confirmationWindow))
}

func (o *Outbox) isAgent(addr string) bool {
	_, ok := o.groups[strings.ToLower(addr)]
	return ok
}

// requesterLang is the requester's language (set through the API or
// learned from the Content-Language of their mail) when we can write
// it, else the channel's.
func (o *Outbox) requesterLang(tx *store.Tx, tk *store.Ticket, ch *channel) string {
	if tk.RequesterID != 0 {
		if c, err := tx.Contact(tk.RequesterID); err == nil && c.Language != "" {
			// "de-at" is written in de-at when templates_dir has it,
			// else in de.
			lang := strings.ToLower(c.Language)
			primary, _, _ := strings.Cut(lang, "-")
			for _, l := range []string{lang, primary} {
				if o.tmpl.has(l) {
					return l
				}
			}
		}
	}
	return ch.lang
}

// notifyAgents enqueues one notification per agent to tell (each with
// a reply address that proves that agent's identity).
func (o *Outbox) notifyAgents(tx *store.Tx, ev Event, ch *channel) error {
	agents, err := tx.Agents()
	if err != nil {
		return err
	}
	var active []store.Agent
	for _, a := range agents {
		if !a.Active || (ev.Agent != nil && strings.EqualFold(a.Email, ev.Agent.Email)) {
			continue
		}
		active = append(active, a)
	}
	// The channel's group when it has members, else every agent.
	if ch.group != "" {
		var inGroup []store.Agent
		for _, a := range active {
			if o.groups[strings.ToLower(a.Email)] == ch.group {
				inGroup = append(inGroup, a)
			}
		}
		if len(inGroup) > 0 {
			active = inGroup
		}
	}
	var to []store.Agent
	responder := ev.Ticket.Responder
	switch {
	case ev.Kind == NoteAdded:
		// A note concerns the assigned agent, and the agents it names.
		if responder != nil {
			to = pick(active, *responder)
		}
		for _, named := range ev.NotifyAlso {
			if slices.ContainsFunc(to, func(a store.Agent) bool { return strings.EqualFold(a.Email, named) }) {
				continue
			}
			for _, a := range agents {
				if a.Active && strings.EqualFold(a.Email, named) && (ev.Agent == nil || !strings.EqualFold(a.Email, ev.Agent.Email)) {
					to = append(to, a)
				}
			}
		}
	case ch.send.NotifyWho == "assigned" && responder != nil:
		to = pick(active, *responder)
	default:
		to = active
	}
	for _, a := range to {
		why, err := o.blocked(tx, a.Email)
		if err != nil {
			return err
		}
		if why != "" {
			continue
		}
		agent := a
		if err := o.write(tx, &draft{kind: KindNotification, ev: ev, ch: ch, lang: ch.lang, rcpt: []string{a.Email}, to: &agent}); err != nil {
			return err
		}
	}
	return nil
}

func pick(agents []store.Agent, email string) []store.Agent {
	for _, a := range agents {
		if strings.EqualFold(a.Email, email) {
			return []store.Agent{a}
		}
	}
	return nil
}

// commandError tells an agent that the commands in their mail were not
// applied.
func (o *Outbox) commandError(tx *store.Tx, ev Event, ch *channel) error {
	rcpt := ev.Recipient
	if rcpt == "" && ev.Agent != nil {
		rcpt = ev.Agent.Email
	}
	if rcpt == "" {
		return errors.New("command error without a recipient")
	}
	why, err := o.blocked(tx, rcpt)
	if err != nil {
		return err
	}
	m := &draft{kind: KindCommandError, ev: ev, ch: ch, lang: ch.lang, rcpt: []string{rcpt}}
	if a, err := tx.AgentByEmail(rcpt); err == nil {
		m.to = a
	} else if ev.Agent != nil {
		m.to = ev.Agent
	}
	if why != "" {
		m.state, m.reason = store.OutboxSuppressed, rcpt+": "+why
	}
	return o.write(tx, m)
}

// escalate mails a missed SLA target to the ticket's assigned agent,
// else the agents of the channel's group, else the admins (each with
// a reply address that proves them, like a notification).
func (o *Outbox) escalate(tx *store.Tx, ev Event, ch *channel) error {
	agents, err := tx.Agents()
	if err != nil {
		return err
	}
	var to []store.Agent
	if r := ev.Ticket.Responder; r != nil {
		for _, a := range agents {
			if a.Active && strings.EqualFold(a.Email, *r) {
				to = append(to, a)
			}
		}
	}
	if len(to) == 0 && ch.group != "" {
		for _, a := range agents {
			if a.Active && o.groups[strings.ToLower(a.Email)] == ch.group {
				to = append(to, a)
			}
		}
	}
	if len(to) == 0 {
		for _, a := range agents {
			if a.Active && a.Role == "admin" {
				to = append(to, a)
			}
		}
	}
	for _, a := range to {
		why, err := o.blocked(tx, a.Email)
		if err != nil {
			return err
		}
		agent := a
		m := &draft{kind: KindEscalation, ev: ev, ch: ch, lang: ch.lang, rcpt: []string{a.Email}, to: &agent}
		if why != "" {
			m.state, m.reason = store.OutboxSuppressed, a.Email+": "+why
		}
		if err := o.write(tx, m); err != nil {
			return err
		}
	}
	return nil
}
