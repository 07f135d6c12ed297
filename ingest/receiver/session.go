package receiver

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/deskmail/deskmail/ingest"
)

// maxAuthFailures is how many failed AUTH attempts a session gets
// before it is closed.
const maxAuthFailures = 3

// session is one SMTP session (from EHLO to QUIT, restarted after
// STARTTLS). go-smtp calls its methods from the connection's goroutine,
// except Data for BDAT, which runs in a second goroutine while RSET may
// arrive: the transaction fields are guarded by mu.
type session struct {
	s      *Server
	c      *smtp.Conn
	tc     *trackedConn
	tls    bool
	tlsTag string // "TLS1.3 TLS_AES_128_GCM_SHA256" for Received

	authUser     string // SMTP user name after a successful AUTH
	authAgent    string // that user's agent email, or ""
	authFailures int

	// The current transaction.
	mu      sync.Mutex
	helo    string // HELO/EHLO name when MAIL was given
	from    string
	size    int64
	rcpts   []string
	channel string
}

// Reset implements smtp.Session: it discards the current transaction.
func (se *session) Reset() {
	se.mu.Lock()
	defer se.mu.Unlock()
	se.from, se.size, se.rcpts, se.channel = "", 0, nil, ""
}

// txn is a snapshot of the current transaction.
type txn struct {
	helo, from, channel string
	size                int64
	rcpts               []string
}

func (se *session) txn() txn {
	se.mu.Lock()
	defer se.mu.Unlock()
	return txn{helo: se.helo, from: se.from, channel: se.channel, size: se.size, rcpts: append([]string(nil), se.rcpts...)}
}

// Logout implements smtp.Session.
func (se *session) Logout() error { return nil }

// Mail implements smtp.Session: rate limits apply here, per client
// address (skipped for authenticated sessions and trusted relays) and
// per sender (smtp.relay_sender_rate_per_minute for trusted relays).
func (se *session) Mail(from string, opts *smtp.MailOptions) error {
	se.Reset()
	if se.tc.isClosing() {
		return errShuttingDown
	}
	if se.s.ipRate != nil && se.authUser == "" && !se.tc.relay && !se.s.ipRate.allow(se.tc.key) {
		se.s.log.Info("smtp: rate limited", "client", se.tc.ip, "limit", "address")
		se.s.opts.Metrics.SMTPRejection("rate_limited")
		return errIPRate
	}
	senders := se.s.from
	if se.tc.relay {
		senders = se.s.relayFrom
	}
	if senders != nil && from != "" && !senders.allow(strings.ToLower(from)) {
		se.s.log.Info("smtp: rate limited", "client", se.tc.ip, "limit", "sender", "relay", se.tc.relay, "from", from)
		se.s.opts.Metrics.SMTPRejection("rate_limited")
		return errSenderRate
	}
	se.mu.Lock()
	defer se.mu.Unlock()
	se.from = from
	// Read here, on the connection's goroutine: with BDAT, Data runs
	// on another one.
	se.helo = se.c.Hostname()
	if opts != nil {
		se.size = opts.Size
	}
	return nil
}

// Rcpt implements smtp.Session: only support addresses (with their
// plus-addressed reply tokens) are accepted. go-smtp has already
// enforced MaxRecipients (452 4.5.3).
func (se *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ch, ok := se.s.addrs.Load().Lookup(to)
	if !ok {
		se.s.log.Info("smtp: recipient refused", "client", se.tc.ip, "rcpt", to)
		se.s.opts.Metrics.SMTPRejection("unknown_recipient")
		return errBadRcpt
	}
	se.mu.Lock()
	defer se.mu.Unlock()
	for _, r := range se.rcpts {
		if strings.EqualFold(r, to) {
			return nil
		}
	}
	if len(se.rcpts) == 0 {
		se.channel = ch
	}
	se.rcpts = append(se.rcpts, to)
	return nil
}

// Data implements smtp.Session: it reads the message (never more than
// MaxMessageBytes), prepends a Received: header, submits it and
// returns nil — go-smtp's 250 — only once Submit reports it durable.
func (se *session) Data(r io.Reader) (err error) {
	se.tc.setInData(true)
	defer se.tc.setInData(false)
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			se.s.log.Error("smtp: panic while receiving a message", "client", se.tc.ip, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			se.s.opts.Metrics.SMTPRejection("store_failure")
			err = errTempFail
		}
	}()

	tx := se.txn()
	received := se.s.now()
	qid := queueID()
	hdr := se.receivedHeader(tx, qid, received)

	var buf bytes.Buffer
	sc := &contentScanner{r: r, maxLine: se.s.cfg.MaxLineLength, maxHeaders: se.s.cfg.MaxHeaders, budget: se.s.buffered}
	defer sc.release()
	grow := 16 << 10
	if tx.size > 0 && tx.size <= se.s.cfg.MaxMessageBytes {
		// An announced SIZE: wait, holding nothing, until the whole
		// message's cost fits, then take it at once — so concurrent
		// large mail queues here instead of raising memory. (The
		// data-rate floor bounds how long a client that lied about
		// its SIZE can hold the reservation.)
		want := (int64(len(hdr)) + tx.size + 512) * memoryCost
		if !se.s.buffered.reserve(want, se.s.opts.MemoryWait, nil) {
			se.s.log.Warn("smtp: no memory for the message within the wait; answered 452", "id", qid, "client", se.tc.ip,
				"size", tx.size, "limit", se.s.opts.MaxBufferedBytes, "wait", se.s.opts.MemoryWait.String())
			se.s.opts.Metrics.SMTPRejection("memory")
			return errNoMemory
		}
		sc.held = want
		grow = int(tx.size)
	}
	buf.Grow(len(hdr) + grow + 512)
	buf.WriteString(hdr)
	if _, err := buf.ReadFrom(sc); err != nil {
		return se.readError(err, qid)
	}
	if len(bytes.TrimSpace(buf.Bytes()[len(hdr):])) == 0 {
		// An empty DATA or BDAT 0 LAST: nothing to keep, and no ticket
		// must come of it.
		se.s.opts.Metrics.SMTPRejection("empty")
		se.s.log.Info("smtp: empty message refused", "id", qid, "client", se.tc.ip, "from", tx.from)
		return errEmpty
	}

	raw := ingest.Raw{
		Data:    buf.Bytes(),
		Source:  ingest.SourceSMTP,
		Channel: tx.channel,
		Name:    qid,
		Envelope: ingest.Envelope{
			MailFrom:   tx.from,
			RcptTo:     tx.rcpts,
			ClientIP:   se.tc.ip,
			Helo:       tx.helo,
			TLS:        se.tls,
			AuthUser:   se.authAgent,
			ReceivedAt: received,
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), se.s.opts.SubmitTimeout)
	defer cancel()
	res, err := se.s.opts.Submitter.Submit(ctx, raw)
	if err == nil && res.Err != nil {
		err = res.Err
	}
	if err != nil {
		// Never echo internal errors to the client: go-smtp would turn
		// a plain error into a permanent 554 with its text.
		se.s.log.Error("smtp: message not stored; answered 451", "id", qid, "client", se.tc.ip, "from", tx.from, "err", err.Error())
		se.s.opts.Metrics.SMTPRejection("store_failure")
		return errTempFail
	}
	if se.s.log.Enabled(context.Background(), slog.LevelInfo) {
		attrs := []any{"id", qid, "client", se.tc.ip, "from", tx.from, "rcpt", tx.rcpts, "size", buf.Len(),
			"action", string(res.Action), "message_id", res.MessageID, "ms", time.Since(start).Milliseconds()}
		if res.TicketID != nil {
			attrs = append(attrs, "ticket", *res.TicketID)
		}
		se.s.log.Info("smtp: message stored", attrs...)
	}
	return nil
}

// readError turns a failure while reading DATA into the reply.
func (se *session) readError(err error, qid string) error {
	var se2 *smtp.SMTPError
	switch {
	case errors.As(err, &se2):
		if se2 == smtp.ErrDataTooLarge {
			se.s.opts.Metrics.SMTPRejection("too_big")
			se.s.log.Info("smtp: message too large", "id", qid, "client", se.tc.ip, "limit", se.s.cfg.MaxMessageBytes)
		}
		return se2
	case errors.Is(err, smtp.ErrTooLongLine), errors.Is(err, errContentLine):
		se.s.opts.Metrics.SMTPRejection("line_too_long")
		se.s.log.Info("smtp: line too long", "id", qid, "client", se.tc.ip, "limit", se.s.cfg.MaxLineLength)
		return errorf(554, smtp.EnhancedCode{5, 6, 0}, "Message has a line longer than %d octets", se.s.cfg.MaxLineLength)
	case errors.Is(err, errContentHeaders):
		se.s.opts.Metrics.SMTPRejection("too_many_headers")
		se.s.log.Info("smtp: too many header fields", "id", qid, "client", se.tc.ip, "limit", se.s.cfg.MaxHeaders)
		return errorf(554, smtp.EnhancedCode{5, 6, 0}, "Message has more than %d header fields", se.s.cfg.MaxHeaders)
	case errors.Is(err, errContentBudget):
		se.s.log.Warn("smtp: too many message bytes in memory; answered 452", "id", qid, "client", se.tc.ip, "limit", se.s.opts.MaxBufferedBytes)
		se.s.opts.Metrics.SMTPRejection("memory")
		return errNoMemory
	case errors.Is(err, smtp.ErrDataReset):
		return err
	}
	if errors.As(err, new(errTooSlow)) {
		return errorf(421, smtp.EnhancedCode{4, 4, 2}, "Connection too slow (under %d bytes a second), closing", int(se.s.minRate))
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		// Counted by trackedConn.Read, which also ends the session.
		se.s.log.Info("smtp: timeout while receiving data", "id", qid, "client", se.tc.ip)
		return errorf(421, smtp.EnhancedCode{4, 4, 2}, "Timeout while receiving data, closing")
	} else {
		se.s.log.Info("smtp: connection failed while receiving data", "id", qid, "client", se.tc.ip, "err", err.Error())
	}
	return errReadFailed
}

// AuthMechanisms implements smtp.AuthSession: PLAIN and LOGIN, over
// TLS only and only when AUTH is configured.
func (se *session) AuthMechanisms() []string {
	if !se.s.cfg.Auth || !se.tls {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth implements smtp.AuthSession.
func (se *session) Auth(mech string) (sasl.Server, error) {
	if !se.s.cfg.Auth {
		return nil, smtp.ErrAuthUnsupported
	}
	if !se.tls {
		return nil, errNeedTLSAuth
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				return se.authFailed(username)
			}
			return se.authenticate(username, password)
		}), nil
	case sasl.Login:
		return &loginServer{auth: se.authenticate}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// authenticate checks a user name and password in constant time (the
// password is compared as a SHA-256 hash, so its length does not leak,
// and an unknown user costs the same as a wrong password), under the
// authGuard: the answer waits out the delay earned by earlier failures
// of this user name and address, and a locked user name or address is
// refused whatever the password — except that a correct password from
// a trusted relay lifts a user's lock.
func (se *session) authenticate(username, password string) error {
	g := se.s.authGuard
	userKey, addrKey := "user:"+strings.ToLower(username), "addr:"+se.tc.key
	wait := g.delay(userKey)
	if !se.tc.relay {
		wait = max(wait, g.delay(addrKey))
	}
	if wait > 0 {
		time.Sleep(wait)
	}
	u, known := se.s.users[username]
	want := u.hash
	if !known {
		want = se.s.dummy
	}
	got := sha256.Sum256([]byte(password))
	ok := subtle.ConstantTimeCompare(got[:], want[:]) == 1 && known
	userLocked, until := g.locked(userKey)
	addrLocked := false
	if !se.tc.relay {
		var au time.Time
		if addrLocked, au = g.locked(addrKey); au.After(until) {
			until = au
		}
	}
	switch {
	case userLocked && ok && se.tc.relay:
		se.s.log.Warn("smtp: authentication lockout lifted by a correct password from a trusted relay", "client", se.tc.ip, "user", username)
	case userLocked || addrLocked:
		se.authFailures++
		se.s.opts.Metrics.SMTPRejection("auth_locked")
		se.s.log.Warn("smtp: authentication refused: locked after repeated failures", "client", se.tc.ip, "user", username,
			"user_locked", userLocked, "address_locked", addrLocked, "until", until.UTC().Format(time.RFC3339))
		if se.authFailures >= maxAuthFailures {
			se.tc.startClosing()
			return errAuthTooMany
		}
		return errAuthLocked
	case !ok:
		return se.authFailed(username)
	}
	g.clear(userKey)
	g.clear(addrKey)
	se.authUser = username
	se.authAgent = u.agent
	se.s.log.Info("smtp: authenticated", "client", se.tc.ip, "user", username, "agent", u.agent)
	return nil
}

// authFailed counts a failure against the session, the user name and
// the client address (trusted relays carry many clients: their address
// is not counted); after maxAuthFailures the session is closed.
func (se *session) authFailed(username string) error {
	se.authFailures++
	se.s.opts.Metrics.SMTPRejection("auth_failed")
	if se.s.ipRate != nil && !se.tc.relay {
		se.s.ipRate.penalize(se.tc.key, 10)
	}
	g := se.s.authGuard
	n, locked := g.fail("user:" + strings.ToLower(username))
	if locked {
		se.s.opts.Metrics.SMTPAuthLockout("user")
		se.s.log.Warn("smtp: user name locked after repeated failed authentication", "user", username, "failures", n,
			"client", se.tc.ip, "for", g.lockFor.String())
	}
	if !se.tc.relay {
		if an, alocked := g.fail("addr:" + se.tc.key); alocked {
			se.s.opts.Metrics.SMTPAuthLockout("address")
			se.s.log.Warn("smtp: client address locked after repeated failed authentication", "client", se.tc.ip, "failures", an,
				"for", g.lockFor.String())
		}
	}
	se.s.log.Warn("smtp: authentication failed", "client", se.tc.ip, "user", username, "failures", se.authFailures, "user_failures", n)
	if se.authFailures >= maxAuthFailures {
		se.tc.startClosing()
		return errAuthTooMany
	}
	return smtp.ErrAuthFailed
}

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login), which go-sasl only has as a client.
type loginServer struct {
	auth     func(username, password string) error
	state    int
	username string
}

// Next implements sasl.Server.
func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.state {
	case 0:
		if response == nil {
			l.state = 1
			return []byte("Username:"), false, nil
		}
		l.username = string(response)
		l.state = 2
		return []byte("Password:"), false, nil
	case 1:
		l.username = string(response)
		l.state = 2
		return []byte("Password:"), false, nil
	case 2:
		l.state = 3
		return nil, true, l.auth(l.username, string(response))
	}
	return nil, true, sasl.ErrUnexpectedClientResponse
}

var qidEncoding = base32.NewEncoding("0123456789ABCDEFGHJKMNPQRSTVWXYZ").WithPadding(base32.NoPadding)

// queueID returns a random identifier for one received message.
func queueID() string {
	var b [10]byte
	rand.Read(b[:])
	return qidEncoding.EncodeToString(b[:])
}

// receivedHeader returns the trace header of RFC 5321 §4.4:
//
//	Received: from HELO ([IP]) by HOST with ESMTP[S][A] id ID [for <RCPT>]; DATE
//
// The HELO name is used only when it is a syntactically valid domain
// or address literal; "for" is given only for a single recipient, so
// the header does not disclose the other recipients.
func (se *session) receivedHeader(tx txn, qid string, at time.Time) string {
	lit := addressLiteral(se.tc.ip)
	from := lit
	if h := tx.helo; validHelo(h) {
		from = h
	}
	proto := "ESMTP"
	if se.tls {
		proto += "S"
	}
	if se.authUser != "" {
		proto += "A"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Received: from %s (%s)\r\n\tby %s (deskmail) with %s", from, lit, se.s.cfg.Hostname, proto)
	if se.tlsTag != "" {
		fmt.Fprintf(&b, "\r\n\t(%s)", se.tlsTag)
	}
	fmt.Fprintf(&b, " id %s", qid)
	if len(tx.rcpts) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", sanitizePath(tx.rcpts[0]))
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", at.Format(time.RFC1123Z))
	return b.String()
}

// addressLiteral formats an IP as an RFC 5321 address literal.
func addressLiteral(ip string) string {
	if strings.Contains(ip, ":") {
		return "[IPv6:" + ip + "]"
	}
	return "[" + ip + "]"
}

// validHelo reports whether h is a domain (letters, digits, hyphens,
// dots) or an address literal in brackets, short enough for a header.
func validHelo(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	if h[0] == '[' {
		if h[len(h)-1] != ']' {
			return false
		}
		inner := h[1 : len(h)-1]
		if v6, ok := strings.CutPrefix(inner, "IPv6:"); ok {
			a, err := netip.ParseAddr(v6)
			return err == nil && a.Is6()
		}
		a, err := netip.ParseAddr(inner)
		return err == nil && a.Is4()
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// sanitizePath keeps an address printable and free of characters that
// would break the header.
func sanitizePath(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r == 0x7f || r == '<' || r == '>' || r == ';' || r == '(' || r == ')' {
			return -1
		}
		return r
	}, s)
}

func sanitizeComment(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e || r == '(' || r == ')' || r == '\\' {
			return -1
		}
		return r
	}, s)
}
