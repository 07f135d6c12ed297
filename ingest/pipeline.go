package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/metrics"
	"github.com/deskmail/deskmail/rules"
	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
	"github.com/deskmail/deskmail/webhook"
)

// Env is what the pipeline needs besides the store.
type Env struct {
	Config *config.Config
	Signer *threading.Signer
	// Notify, when set, is called inside the message's transaction for
	// every change that may cause outbound mail (see outbound.Outbox).
	Notify func(tx *store.Tx, n Notice) error
	// Prefetch, if set, is called in a batch's transaction before its
	// messages are threaded, with the addresses their senders use, for
	// what Notify will look up about them (one query for the batch
	// rather than one per message; see store.Tx.PrefetchOutboxTo).
	Prefetch func(tx *store.Tx, senders []string) error
	Logger   *slog.Logger
	// AfterCommit, when set, is called after every successful commit
	// (the daemon kicks the outbox worker with it).
	AfterCommit func()
	// Metrics, when set, counts messages, actions and latency.
	Metrics *metrics.Metrics
	// ImplicitSupport treats each message's first To address as a
	// support address (`deskmail ingest` without --config).
	ImplicitSupport bool
	// KeepStored leaves statuses, pipelines and channels already in the
	// database as they are and only adds missing ones: a command run
	// without --config must not reset what a configuration put there.
	KeepStored bool
	// Now is the clock (default time.Now).
	Now func() time.Time
	// MaxBatch bounds how many messages one group commit takes
	// (default 256).
	MaxBatch int
	// Rules, when set, runs on every event inside its transaction,
	// after Notify (see the rules package and pipeline_rules.go).
	Rules *rules.Engine
	// Webhook queues an event for one named webhook: a rule's webhook
	// action.
	Webhook func(tx *store.Tx, hook string, n Notice, rule string) error
}

// Notice is one change the outbound side may answer with mail.
type Notice struct {
	Event        threading.EventKind
	Ticket       *store.Ticket
	Conversation *store.Conversation
	Channel      string
	InReplyTo    string
	Agent        *store.Agent
	Quiet        bool
	Suppress     string
	// ErrorText is, for command_error, what was wrong.
	ErrorText string
	// Recipient, when set, is who a command_error notice goes to (an
	// agent address that proved nothing; otherwise Agent).
	Recipient string
	// NoMail: the outbound side sends nothing for this event (mail the
	// team sent from the Sent folder; a resolved ticket closed, whose
	// customer had the closing mail); webhooks still hear of it.
	NoMail bool
	// Copy: the same event told again to another agent (a note's
	// notify list): mail only, no webhook.
	Copy bool
	// Breach is, for sla_breached, the missed target.
	Breach *webhook.Breach
	// NotifyAlso are agents (active, lower-case addresses) the change
	// names to be told besides those the event tells by itself: a
	// note's notify_emails, on top of the assigned agent.
	NotifyAlso []string
}

// Pipeline drives raw messages through parse → thread → store, one
// transaction per batch, each message all-or-nothing inside it.
//
// Contract: when Ingest or Submit returns a Result with a nil Err, the
// message (raw bytes and its effect on tickets, or the raw bytes alone
// marked failed) is committed to disk; only then may the source
// acknowledge it.
type Pipeline struct {
	st       *store.Store
	env      Env
	engine   *threading.Engine
	channels map[string]channelInfo
	addrs    *threading.Addresses
	trusted  map[string]bool
	// relays are the SMTP clients allowed to hand us
	// Authentication-Results (the MTAs in front of deskmail).
	relays []netip.Prefix
	// domainProof are the channels whose agents a domain signature
	// proves (channels[].agent_domain_proof).
	domainProof map[string]bool
	authUser    map[string]string
	queue       chan *job
	log         *slog.Logger
}

type channelInfo struct {
	id       int64
	pipeline int64
}

type job struct {
	raw    Raw
	prep   *prepared
	result chan Result
}

// NewPipeline syncs the configuration into the store (statuses,
// pipelines, channels, agents) and returns a pipeline.
func NewPipeline(ctx context.Context, st *store.Store, env Env) (*Pipeline, error) {
	if env.Config == nil {
		env.Config = config.Default()
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	if env.Now == nil {
		env.Now = time.Now
	}
	if env.MaxBatch <= 0 {
		env.MaxBatch = 256
	}
	cfg := env.Config
	p := &Pipeline{st: st, env: env, channels: map[string]channelInfo{}, trusted: map[string]bool{}, authUser: map[string]string{},
		queue: make(chan *job, 4*env.MaxBatch), log: env.Logger}
	statuses, pipelines, err := SyncConfig(ctx, st, cfg, p.channels, env.KeepStored)
	if err != nil {
		return nil, err
	}
	token, err := threading.NewSubjectToken(cfg.Threading.SubjectToken)
	if err != nil {
		return nil, err
	}
	var names []string
	addrs := map[string][]string{}
	for _, ch := range cfg.Channels {
		names = append(names, ch.Name)
		addrs[ch.Name] = ch.Addresses
	}
	p.addrs = threading.NewAddresses(names, addrs)
	for _, h := range cfg.Threading.TrustedAuthServers {
		p.trusted[strings.ToLower(h)] = true
	}
	if p.relays, err = cfg.SMTP.TrustedRelayPrefixes(); err != nil {
		return nil, fmt.Errorf("pipeline: smtp.trusted_relays: %w", err)
	}
	p.domainProof = map[string]bool{}
	for _, ch := range cfg.Channels {
		p.domainProof[ch.Name] = ch.AgentDomainProof
	}
	for _, u := range cfg.SMTP.Users {
		if u.Agent != "" {
			p.authUser[strings.ToLower(u.Username)] = strings.ToLower(u.Agent)
		}
	}
	p.engine = &threading.Engine{
		Life:            threading.NewLifecycle(statuses, pipelines),
		Token:           token,
		Signer:          env.Signer,
		Addresses:       p.addrs,
		NoReply:         cfg.Threading.NoReplySenders,
		ImplicitSupport: env.ImplicitSupport,
		BounceNeedsVERP: cfg.Outbound.VERPEnabled(),
		Now:             env.Now,
	}
	p.engine.SameDomain = map[int64]bool{}
	for _, ch := range cfg.Channels {
		if ci, ok := p.channels[ch.Name]; ok && ch.ThreadSameDomain {
			p.engine.SameDomain[ci.id] = true
		}
	}
	for _, f := range cfg.CustomFields {
		p.engine.CustomFields = append(p.engine.CustomFields, threading.CustomField{Name: f.Name, Type: f.Type, Choices: f.Choices})
	}
	return p, nil
}

// Engine returns the threading engine (for admin changes that follow
// the same lifecycle rules).
func (p *Pipeline) Engine() *threading.Engine { return p.engine }

// Addresses returns the support address map (for SMTP RCPT checks).
func (p *Pipeline) Addresses() *threading.Addresses { return p.addrs }

// SyncConfig writes the configured statuses, pipelines, channels and
// agents into the store and returns the statuses and pipelines as
// stored. channels, when non-nil, receives each channel's ids. With
// keep, rows already stored are left as they are.
//
// Most starts find everything already stored as configured (behind an
// MTA, `deskmail ingest -` starts once per mail), so the rows are first
// compared in a read transaction, and written — one write transaction,
// synced to disk — only when something differs.
func SyncConfig(ctx context.Context, st *store.Store, cfg *config.Config, channels map[string]channelInfo, keep bool) ([]store.Status, []store.Pipeline, error) {
	var statuses []store.Status
	var pipelines []store.Pipeline
	stored := map[string]channelInfo{}
	same := false
	err := st.Read(ctx, func(tx *store.Tx) error {
		var err error
		same, statuses, pipelines, err = configStored(tx, cfg, stored, keep)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("sync configuration: %w", err)
	}
	if same {
		for name, ci := range stored {
			if channels != nil {
				channels[name] = ci
			}
		}
		return statuses, pipelines, nil
	}
	err = st.Write(ctx, func(tx *store.Tx) error {
		haveStatus, havePipe, haveChan := map[int]bool{}, map[string]int64{}, map[string]store.Channel{}
		if keep {
			ss, err := tx.Statuses()
			if err != nil {
				return err
			}
			for _, s := range ss {
				haveStatus[s.Code] = true
			}
			ps, err := tx.Pipelines()
			if err != nil {
				return err
			}
			for _, p := range ps {
				havePipe[p.Name] = p.ID
			}
			cs, err := tx.Channels()
			if err != nil {
				return err
			}
			for _, c := range cs {
				haveChan[c.Name] = c
			}
		}
		for _, s := range cfg.AllStatuses() {
			if haveStatus[s.Code] {
				continue
			}
			if err := tx.PutStatus(store.Status{Code: s.Code, Name: s.Name, Category: s.Category}); err != nil {
				return err
			}
		}
		pipeIDs := map[string]int64{}
		for _, pc := range cfg.Pipelines {
			if id, ok := havePipe[pc.Name]; ok {
				pipeIDs[pc.Name] = id
				continue
			}
			sp := store.Pipeline{Name: pc.Name, NewStatus: pc.NewStatus, CustomerReplyStatus: pc.CustomerReplyStatus,
				ClosedReply: pc.ClosedReply, ReopenWithin: pc.ReopenWithin.Duration, Statuses: pc.Statuses}
			if pc.AgentReplyStatus != "unchanged" {
				code, err := strconv.Atoi(pc.AgentReplyStatus)
				if err != nil {
					return fmt.Errorf("pipeline %s: agent_reply_status %q: %w", pc.Name, pc.AgentReplyStatus, err)
				}
				sp.AgentReplyStatus = &code
			}
			id, err := tx.PutPipeline(sp)
			if err != nil {
				return err
			}
			pipeIDs[pc.Name] = id
		}
		for _, ch := range cfg.Channels {
			if c, ok := haveChan[ch.Name]; ok && c.PipelineID != nil {
				if channels != nil {
					channels[ch.Name] = channelInfo{id: c.ID, pipeline: *c.PipelineID}
				}
				continue
			}
			pid := pipeIDs[ch.Pipeline]
			addr := ""
			if len(ch.Addresses) > 0 {
				addr = ch.Addresses[0]
			}
			id, err := tx.PutChannel(store.Channel{Name: ch.Name, Address: addr, PipelineID: &pid, Language: ch.Language})
			if err != nil {
				return err
			}
			if channels != nil {
				channels[ch.Name] = channelInfo{id: id, pipeline: pid}
			}
		}
		for _, a := range cfg.Agents {
			if _, err := tx.PutAgent(store.Agent{Email: strings.ToLower(a.Email), Name: a.Name, Role: a.Role, Active: true}); err != nil {
				return err
			}
		}
		var err error
		if statuses, err = tx.Statuses(); err != nil {
			return err
		}
		pipelines, err = tx.Pipelines()
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("sync configuration: %w", err)
	}
	return statuses, pipelines, nil
}

// configStored reports whether SyncConfig would leave every row as it
// is (the same checks as its writes, with keep's meaning), and returns
// the stored statuses and pipelines and, in channels, each configured
// channel's ids.
func configStored(tx *store.Tx, cfg *config.Config, channels map[string]channelInfo, keep bool) (bool, []store.Status, []store.Pipeline, error) {
	statuses, err := tx.Statuses()
	if err != nil {
		return false, nil, nil, err
	}
	haveStatus := map[int]store.Status{}
	for _, s := range statuses {
		haveStatus[s.Code] = s
	}
	for _, s := range cfg.AllStatuses() {
		h, ok := haveStatus[s.Code]
		if !ok || !keep && (h.Name != s.Name || h.Category != s.Category) {
			return false, nil, nil, nil
		}
	}
	pipelines, err := tx.Pipelines()
	if err != nil {
		return false, nil, nil, err
	}
	havePipe := map[string]store.Pipeline{}
	for _, p := range pipelines {
		havePipe[p.Name] = p
	}
	pipeIDs := map[string]int64{}
	for _, pc := range cfg.Pipelines {
		h, ok := havePipe[pc.Name]
		if !ok || !keep && !samePipeline(h, pc) {
			return false, nil, nil, nil
		}
		pipeIDs[pc.Name] = h.ID
	}
	cs, err := tx.Channels()
	if err != nil {
		return false, nil, nil, err
	}
	haveChan := map[string]store.Channel{}
	for _, c := range cs {
		haveChan[c.Name] = c
	}
	for _, ch := range cfg.Channels {
		c, ok := haveChan[ch.Name]
		if !ok || c.PipelineID == nil {
			return false, nil, nil, nil
		}
		if !keep {
			addr := ""
			if len(ch.Addresses) > 0 {
				addr = ch.Addresses[0]
			}
			pid, ok := pipeIDs[ch.Pipeline]
			if !ok || *c.PipelineID != pid || c.Address != addr || c.Language != ch.Language {
				return false, nil, nil, nil
			}
		}
		channels[ch.Name] = channelInfo{id: c.ID, pipeline: *c.PipelineID}
	}
	if len(cfg.Agents) > 0 {
		agents, err := tx.Agents()
		if err != nil {
			return false, nil, nil, err
		}
		haveAgent := map[string]store.Agent{}
		for _, a := range agents {
			haveAgent[a.Email] = a
		}
		for _, a := range cfg.Agents {
			role := a.Role
			if role == "" {
				role = "agent"
			}
			h, ok := haveAgent[strings.ToLower(a.Email)]
			if !ok || h.Name != a.Name || h.Role != role || !h.Active {
				return false, nil, nil, nil
			}
		}
	}
	return true, statuses, pipelines, nil
}

// samePipeline reports whether the stored pipeline h is what PutPipeline
// would write for pc.
func samePipeline(h store.Pipeline, pc config.PipelineConfig) bool {
	var agent *int
	if pc.AgentReplyStatus != "unchanged" {
		code, err := strconv.Atoi(pc.AgentReplyStatus)
		if err != nil {
			return false // the write reports it
		}
		agent = &code
	}
	if (agent == nil) != (h.AgentReplyStatus == nil) || agent != nil && *agent != *h.AgentReplyStatus {
		return false
	}
	return h.NewStatus == pc.NewStatus && h.CustomerReplyStatus == pc.CustomerReplyStatus &&
		h.ClosedReply == pc.ClosedReply &&
		h.ReopenWithin == pc.ReopenWithin.Duration/time.Second*time.Second &&
		slices.Equal(h.Statuses, pc.Statuses)
}

// prepared is a message parsed outside the transaction.
type prepared struct {
	start   time.Time
	raw     Raw
	msg     *Message
	in      *threading.Incoming
	channel string
	err     error // parse failure: the raw is kept and marked failed
}

// prepare parses a raw message and converts it for threading. It never
// panics: a parser panic becomes a failed message that is kept raw.
func (p *Pipeline) prepare(r Raw) (pr *prepared) {
	pr = &prepared{raw: r, start: time.Now()}
	if r.Envelope.ReceivedAt.IsZero() {
		pr.raw.Envelope.ReceivedAt = p.env.Now()
	}
	defer func() {
		if v := recover(); v != nil {
			pr.msg, pr.in = nil, nil
			pr.err = fmt.Errorf("parser panic: %v", v)
			p.log.Error("parser panic", "name", r.Name, "panic", v, "stack", string(debug.Stack()))
		}
	}()
	msg, err := Parse(r.Data, ParseOptions{Now: pr.raw.Envelope.ReceivedAt, MaxAttachmentBytes: p.env.Config.MaxAttachmentBytes})
	if err != nil {
		pr.err = err
		return pr
	}
	pr.msg = msg
	pr.channel = p.channelFor(r, msg)
	if contentFree(msg) {
		pr.err = ErrEmpty
		return pr
	}
	pr.in = p.incoming(pr.raw, msg, pr.channel)
	return pr
}

// ErrEmpty is the error of a message kept raw and marked failed because
// it has no subject, no text and no attachment: it is no ticket (it
// would open one from nobody about nothing).
var ErrEmpty = errors.New("empty message: no subject, text or attachment")

// contentFree reports whether m says nothing at all.
func contentFree(m *Message) bool {
	return strings.TrimSpace(m.Subject) == "" && strings.TrimSpace(m.Text) == "" &&
		strings.TrimSpace(m.HTML) == "" && len(m.Attachments) == 0
}

// channelFor picks the channel: the source's, else the first support
// address among the envelope recipients, then To/Cc; else the first.
func (p *Pipeline) channelFor(r Raw, m *Message) string {
	if r.Channel != "" {
		if _, ok := p.channels[r.Channel]; ok {
			return r.Channel
		}
	}
	for _, a := range r.Envelope.RcptTo {
		if ch, ok := p.addrs.Lookup(a); ok {
			return ch
		}
	}
	for _, list := range [][]Address{m.To, m.Cc} {
		for _, a := range list {
			if ch, ok := p.addrs.Lookup(a.Address); ok {
				return ch
			}
		}
	}
	for _, h := range []string{"Delivered-To", "X-Original-To"} {
		for _, v := range m.Headers[h] {
			if ch, ok := p.addrs.Lookup(strings.Trim(strings.TrimSpace(v), "<>")); ok {
				return ch
			}
		}
	}
	return p.addrs.Default()
}

func persons(list []Address) []threading.Person {
	out := make([]threading.Person, 0, len(list))
	for _, a := range list {
		out = append(out, threading.Person{Name: a.Name, Email: strings.ToLower(a.Address)})
	}
	return out
}

func (p *Pipeline) incoming(r Raw, m *Message, channel string) *threading.Incoming {
	in := &threading.Incoming{
		MessageID: m.MessageID, GeneratedID: m.GeneratedID, InReplyTo: m.InReplyTo, References: m.References,
		ReplyTo: persons(m.ReplyTo), To: persons(m.To), Cc: persons(m.Cc), RcptTo: r.Envelope.RcptTo,
		Subject: m.Subject, Text: m.Text, HTML: m.HTML, ReplyText: m.ReplyText, Kind: string(m.Kind),
		ReceivedAt: r.Envelope.ReceivedAt, Quiet: r.Quiet, Sent: r.Sent,
	}
	if m.From != nil {
		in.From = threading.Person{Name: m.From.Name, Email: strings.ToLower(m.From.Address)}
	}
	if ci, ok := p.channels[channel]; ok {
		id, pid := ci.id, ci.pipeline
		in.ChannelID, in.PipelineID = &id, &pid
	}
	if b := m.Bounce; b != nil {
		in.BounceOriginalID, in.BounceRecipients, in.BounceStatus, in.BouncePermanent = b.OriginalMessageID, b.Recipients, b.Status, b.Permanent
	}
	for _, a := range m.Attachments {
		in.Files = append(in.Files, store.Attachment{Filename: a.Filename, OriginalFilename: a.OriginalFilename,
			ContentType: a.ContentType, Inline: a.Inline, ContentID: a.ContentID, Content: a.Content})
	}
	if threading.IsForward(m.Subject) {
		if who, ok := forwardedSender(m); ok {
			in.Forwarded = &who
		}
	}
	if v := m.Headers["Content-Language"]; len(v) > 0 {
		in.Language = contentLanguage(v[0])
	}
	if v := m.Headers["Thread-Index"]; len(v) > 0 {
		in.ThreadConversation = threading.ThreadIndexConversation(v[0])
	}
	in.SenderProof = p.senderProof(r, m, channel)
	return in
}

// contentLanguage is the first language tag of a Content-Language
// field (RFC 3282), in lower case, or "" when it is not a plausible tag.
func contentLanguage(v string) string {
	tag, _, _ := strings.Cut(v, ",")
	tag = strings.ToLower(strings.TrimSpace(tag))
	if len(tag) < 2 || len(tag) > 35 {
		return ""
	}
	for i, r := range tag {
		if !(r >= 'a' && r <= 'z' || r == '-' && i > 0 || r >= '0' && r <= '9' && i > 1) {
			return ""
		}
	}
	return tag
}

// forwardedSender finds the original sender of a forward: an attached
// message/rfc822 first, then the forwarded header block in the text.
func forwardedSender(m *Message) (threading.Person, bool) {
	for _, a := range m.Attachments {
		if strings.EqualFold(a.ContentType, "message/rfc822") && len(a.Content) > 0 {
			if fm, err := Parse(a.Content, ParseOptions{}); err == nil && fm.From != nil && fm.From.Address != "" {
				return threading.Person{Name: fm.From.Name, Email: strings.ToLower(fm.From.Address)}, true
			}
		}
	}
	return threading.ForwardedSender(m.Text)
}

// senderProof tells how the From address was proven, if at all: SMTP
// AUTH as that agent, or a pass in an Authentication-Results header
// that the trusted border wrote (see trustedAuthResults and authProof).
// threading.Engine.proveAgent makes the decision from it.
func (p *Pipeline) senderProof(r Raw, m *Message, channel string) string {
	if m.From == nil {
		return ""
	}
	from := strings.ToLower(m.From.Address)
	if u := strings.ToLower(r.Envelope.AuthUser); u != "" && (u == from || p.authUser[u] == from) {
		return "smtp-auth"
	}
	return authProof(p.trustedAuthResults(r), from, p.domainProof[channel])
}

// Ingest commits a batch of raw messages in one transaction (each one
// all-or-nothing inside it) and returns one Result per message. A
// non-nil error means nothing was committed.
func (p *Pipeline) Ingest(ctx context.Context, raws []Raw) ([]Result, error) {
	return p.Commit(ctx, p.Prepare(raws))
}

// Batch is a set of messages parsed and ready to commit. Prepare and
// Commit split Ingest in two so that a caller with a stream of mail
// (deskmail ingest, an IMAP drain) can parse the next batch while the
// previous one commits.
type Batch struct {
	preps []*prepared
}

// Len returns the number of messages in the batch.
func (b *Batch) Len() int { return len(b.preps) }

// Prepare parses raws on every core (parsing costs as much as
// threading and storing, and messages parse independently). It never
// fails: a message that cannot be parsed is committed raw, marked
// failed.
func (p *Pipeline) Prepare(raws []Raw) *Batch {
	preps := make([]*prepared, len(raws))
	if len(raws) == 1 {
		// One message (an MTA's pipe): parsed here, without a worker
		// goroutine, which on `deskmail ingest -`'s locked main thread
		// needs a second thread to run on.
		preps[0] = p.prepare(raws[0])
		return &Batch{preps: preps}
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(raws)) {
		wg.Go(func() {
			for i := range next {
				preps[i] = p.prepare(raws[i])
			}
		})
	}
	for i := range raws {
		next <- i
	}
	close(next)
	wg.Wait()
	return &Batch{preps: preps}
}

// Commit stores a prepared batch in one transaction, each message
// all-or-nothing inside it, with the same contract as Ingest.
//
// The outbound mail of a batch of several messages is rendered on a
// goroutine of the transaction while threading and storing, serial,
// go on (store.Tx.RenderLater). Should a rendering fail, nothing is
// committed and the batch is committed again rendering each mail in
// its message's own savepoint, where a failure sets that message
// aside alone, as Submit's group commits always do.
func (p *Pipeline) Commit(ctx context.Context, b *Batch) ([]Result, error) {
	// One message (an MTA's pipe) has nothing to render beside.
	results, err := p.commit(ctx, b.preps, len(b.preps) > 1)
	if errors.Is(err, store.ErrLater) && len(b.preps) > 1 {
		p.log.Warn("batch commit failed rendering its mail; committing it again mail by mail", "messages", len(b.preps), "err", err)
		return p.commit(ctx, b.preps, false)
	}
	return results, err
}

func (p *Pipeline) commit(ctx context.Context, preps []*prepared, renderLater bool) ([]Result, error) {
	results := make([]Result, len(preps))
	// WriteBatch may run the function twice (PostgreSQL): what it
	// reports outside the transaction waits for the run that commits.
	var report []func()
	err := p.st.WriteBatch(ctx, func(tx *store.Tx) error {
		report = report[:0]
		var fresh []int
		if renderLater {
			tx.RenderLater()
		}
		if len(preps) > 1 {
			var err error
			if fresh, err = p.prefetch(tx, preps); err != nil {
				return err
			}
		}
		for i, pr := range preps {
			if fresh != nil {
				tx.ExpectNewTickets(fresh[i])
			}
			res, err := p.one(tx, pr, &report)
			if err != nil {
				return err
			}
			results[i] = res
		}
		return nil
	})
	if err != nil {
		for i := range results {
			results[i] = Result{Name: preps[i].raw.Name, Err: err}
		}
		return results, fmt.Errorf("ingest: commit %d messages: %w", len(preps), err)
	}
	for _, f := range report {
		f()
	}
	if p.env.AfterCommit != nil {
		p.env.AfterCommit()
	}
	p.env.Metrics.Batch(len(preps))
	for i, res := range results {
		warnings := 0
		if preps[i].msg != nil {
			warnings = len(preps[i].msg.Warnings)
		}
		p.env.Metrics.Message(preps[i].channel, string(preps[i].raw.Source), string(res.Action), warnings, time.Since(preps[i].start))
		p.log.Info("message", "channel", preps[i].channel, "source", preps[i].raw.Source, "message_id", res.MessageID,
			"action", res.Action, "ticket", derefInt64(res.TicketID))
	}
	return results, nil
}

// prefetch asks the store, in one query each, for what the batch's
// messages will look up one by one (a round trip each on PostgreSQL):
// the Message-IDs they name, their senders' contacts, what Notify reads
// about those senders, and conversation ids. It returns, where the
// store remembers the Message-IDs (else nil), how many messages from
// message i on look like new tickets: their Message-IDs name no ticket
// yet, nor another message of the batch.
func (p *Pipeline) prefetch(tx *store.Tx, preps []*prepared) ([]int, error) {
	var ids, senders []string
	own := make(map[string]bool, len(preps))
	for _, pr := range preps {
		if pr.err == nil && pr.in != nil {
			ids = append(ids, threading.LookedUp(pr.in)...)
			senders = append(senders, threading.Senders(pr.in)...)
			own[pr.in.MessageID] = true
		}
	}
	// About one conversation per message threaded.
	if err := tx.ReserveConversations(len(own)); err != nil {
		return nil, err
	}
	if err := tx.PrefetchMessageIDs(ids); err != nil {
		return nil, err
	}
	if err := tx.PrefetchContacts(senders); err != nil {
		return nil, err
	}
	// Before any row is written: another instance's batch with the
	// same tickets or customers waits here, or this one does.
	if err := tx.LockAhead(senders); err != nil {
		return nil, err
	}
	// Under those locks: the tickets the replies will change.
	if err := tx.PrefetchTickets(); err != nil {
		return nil, err
	}
	if p.env.Prefetch != nil {
		if err := p.env.Prefetch(tx, senders); err != nil {
			return nil, err
		}
	}
	fresh := make([]int, len(preps)+1)
	for i := len(preps) - 1; i >= 0; i-- {
		fresh[i] = fresh[i+1]
		pr := preps[i]
		if pr.err != nil || pr.in == nil {
			continue
		}
		looked := threading.LookedUp(pr.in)
		refs, ok := tx.RememberedMessageIDs(looked)
		if !ok {
			return nil, nil // SQLite: nothing to expect
		}
		if looksNew(refs, pr.in.MessageID) && !slices.ContainsFunc(looked[1:], func(id string) bool { return own[id] }) {
			fresh[i]++
		}
	}
	return fresh, nil
}

// looksNew reports whether a message whose lookups found refs (its own
// Message-ID, own, and its headers' candidates) is likely to open a
// ticket: it is not a copy of one stored, and names no ticket.
func looksNew(refs map[string]store.MessageRef, own string) bool {
	if _, dup := refs[own]; dup {
		return false
	}
	for _, r := range refs {
		if r.TicketID != nil {
			return false
		}
	}
	return true
}

func derefInt64(v *int64) any {
	if v == nil {
		return nil
	}
	return *v
}

// one stores a message inside tx: raw bytes first, then threading and
// notices inside a savepoint; if those fail the raw message is kept and
// marked failed. Only store errors that break the transaction return
// an error.
func (p *Pipeline) one(tx *store.Tx, pr *prepared, report *[]func()) (Result, error) {
	res := Result{Name: pr.raw.Name}
	rm := &store.RawMessage{Source: string(pr.raw.Source), Name: pr.raw.Name, Data: pr.raw.Data, Envelope: pr.raw.Envelope,
		ReceivedAt: pr.raw.Envelope.ReceivedAt}
	if pr.in != nil {
		rm.ChannelID = pr.in.ChannelID
	}
	if pr.msg != nil {
		rm.MessageID, rm.Warnings, rm.SHA256 = pr.msg.MessageID, pr.msg.Warnings, pr.msg.ContentHash
		res.MessageID = pr.msg.MessageID
	}
	if pr.err != nil {
		rm.State, rm.Error = "failed", pr.err.Error()
	}
	rawID, err := tx.AddRaw(rm)
	if err != nil {
		return res, err
	}
	res.RawID = rawID
	if pr.err != nil {
		res.Action, res.Reason = ActionIgnored, pr.err.Error()
		if errors.Is(pr.err, ErrEmpty) {
			*report = append(*report, func() {
				p.env.Metrics.Failed("empty")
				p.log.Warn("message kept raw: empty", "name", pr.raw.Name, "message_id", res.MessageID, "raw_id", rawID)
			})
			return res, nil
		}
		*report = append(*report, func() {
			p.env.Metrics.Failed("parse")
			p.log.Warn("message kept raw: cannot parse", "name", pr.raw.Name, "raw_id", rawID, "err", pr.err)
		})
		return res, nil
	}
	pr.in.RawID = rawID
	var out *threading.Outcome
	err = tx.Savepoint(func() error {
		thread := func() error {
			var err error
			out, err = p.engine.Thread(tx, pr.in)
			if err != nil {
				return err
			}
			return p.notify(tx, pr, out)
		}
		if pr.raw.History {
			return tx.WithoutTicketHook(thread)
		}
		return thread()
	})
	if err != nil {
		if ctxErr := tx.Context().Err(); ctxErr != nil {
			return res, ctxErr
		}
		if errors.Is(err, store.ErrConflict) {
			// Another transaction's doing, not this message's: the
			// batch runs again (store.WriteBatch).
			return res, err
		}
		*report = append(*report, func() {
			p.env.Metrics.Failed("thread")
			p.log.Error("message kept raw: threading failed", "name", pr.raw.Name, "message_id", res.MessageID, "raw_id", rawID, "err", err)
		})
		if serr := tx.SetRawState(rawID, "failed", err.Error()); serr != nil {
			return res, serr
		}
		res.Action, res.Reason = ActionIgnored, "threading failed: "+err.Error()
		return res, nil
	}
	res.Action = Action(out.Action)
	switch res.Action {
	case ActionDuplicate:
		if err := tx.SetRawState(rawID, "duplicate", ""); err != nil {
			return res, err
		}
	case ActionIgnored:
		res.Reason = out.Suppress
		if err := tx.SetRawState(rawID, "ignored", out.Suppress); err != nil {
			return res, err
		}
	}
	if tk := out.Ticket; tk != nil {
		id, st := tk.ID, tk.Status
		res.TicketID, res.Status, res.ParentTicketID = &id, &st, tk.ParentID
	}
	if out.Conversation != nil {
		id := out.Conversation.ID
		res.ConversationID = &id
	}
	return res, nil
}

// notify hands every event of an outcome to the outbound side and the
// rules; out.Ticket is read again when rules ran.
func (p *Pipeline) notify(tx *store.Tx, pr *prepared, out *threading.Outcome) error {
	if out.Ticket == nil {
		return nil
	}
	// Mail from the Sent folder is quiet (never mailed) but live: its
	// events reach webhooks and rules. Imported history reaches
	// nothing.
	quiet := pr.raw.History || (pr.raw.Quiet && !pr.raw.Sent)
	ns := make([]Notice, 0, len(out.Events))
	for _, ev := range out.Events {
		ns = append(ns, Notice{Event: ev, Ticket: out.Ticket, Conversation: out.Conversation, Channel: pr.channel,
			InReplyTo: out.InReplyTo, Agent: out.Agent, Quiet: quiet, Suppress: out.Suppress, ErrorText: out.ErrorText,
			Recipient: out.NoticeTo, NoMail: out.NoMail || pr.raw.Quiet})
	}
	ran, err := p.dispatch(tx, ns, out.Ticket.UpdatedAt)
	if err != nil || !ran {
		return err
	}
	out.Ticket, err = tx.Ticket(out.Ticket.ID)
	return err
}

// Submit hands one message to the group committer and waits until the
// batch that holds it is committed. Many goroutines may call Submit at
// once; their messages share one transaction and one fsync. A nil
// error means the message is durable. Run must be running.
func (p *Pipeline) Submit(ctx context.Context, r Raw) (Result, error) {
	j := &job{raw: r, prep: p.prepare(r), result: make(chan Result, 1)}
	select {
	case p.queue <- j:
	case <-ctx.Done():
		return Result{Name: r.Name, Err: ctx.Err()}, ctx.Err()
	}
	select {
	case res := <-j.result:
		return res, res.Err
	case <-ctx.Done():
		// The batch may still commit; the source will retry and the
		// retry will be a duplicate, never a second ticket.
		return Result{Name: r.Name, Err: ctx.Err()}, ctx.Err()
	}
}

// Run is the group committer: it takes every message waiting (and,
// when several senders are at work, waits a moment for those a little
// behind: see gatherer), commits them in one transaction, answers each
// Submit, and repeats until ctx ends. While one batch commits, the
// next one gathers.
func (p *Pipeline) Run(ctx context.Context) error {
	var g gatherer
	for {
		var first *job
		select {
		case first = <-p.queue:
		case <-ctx.Done():
			return nil
		}
		batch := g.gather(ctx, first, p.queue, p.env.MaxBatch)
		preps := make([]*prepared, len(batch))
		for i, j := range batch {
			preps[i] = j.prep
		}
		// Commit with a context that is not cancelled by shutdown: a
		// batch that started is finished, so its senders get an answer.
		start := time.Now()
		results, err := p.commit(context.WithoutCancel(ctx), preps, false)
		g.done(len(batch), time.Since(start))
		if err != nil {
			p.log.Error("group commit failed", "messages", len(batch), "err", err)
		}
		for i, j := range batch {
			j.result <- results[i]
		}
	}
}

// Update changes a ticket as an admin, agent command or API call would:
// the same lifecycle rules, history and outbound notices as mail.
func (p *Pipeline) Update(ctx context.Context, ticketID int64, c threading.Changes, by threading.Actor) (*store.Ticket, error) {
	var tk *store.Ticket
	err := p.st.Write(ctx, func(tx *store.Tx) error {
		var err error
		if tk, err = tx.Ticket(ticketID); err != nil {
			return err
		}
		now := p.env.Now()
		events, err := p.engine.Apply(tx, tk, c, by, now)
		if err != nil {
			return fmt.Errorf("ticket %d: %w", ticketID, err)
		}
		if tk, err = tx.Ticket(ticketID); err != nil {
			return err
		}
		if _, err := p.dispatch(tx, p.notices(events, tk, nil), now); err != nil {
			return err
		}
		tk, err = tx.Ticket(ticketID)
		return err
	})
	if err != nil {
		return nil, err
	}
	if p.env.AfterCommit != nil {
		p.env.AfterCommit()
	}
	return tk, nil
}
