package ingest

import (
	"bufio"
	"bytes"
	"net/textproto"
	"strings"

	"github.com/jhillyerd/enmime/v2"
	"github.com/jhillyerd/enmime/v2/dsn"
	"github.com/jhillyerd/enmime/v2/mediatype"

	"github.com/deskmail/deskmail/internal/lazyregexp"
)

// classify sets m.Kind (and m.Bounce for bounces). The order matters:
//
//  1. bounce: a failed RFC 3464 delivery report, or the classic forms
//     of one (MAILER-DAEMON/postmaster with a failure subject,
//     X-Failed-Recipients, unambiguous failure subjects);
//  2. auto_reply: explicit RFC 3834 and vendor markers (Auto-Submitted
//     other than "no", X-Autoreply, X-Autorespond, Precedence:
//     auto_reply), and every other machine notice that must never open
//     a ticket nor flag an address: success or delay DSNs, ARF
//     feedback reports (RFC 5965) and read receipts (RFC 8098);
//  3. list: List-Id, or List-Unsubscribe with Precedence list/bulk or
//     other list headers;
//  4. auto_reply again for Precedence bulk/junk and out-of-office
//     subjects;
//  5. normal.
//
// X-Auto-Response-Suppress is not enough on its own: Outlook and
// Exchange put it on ordinary mail ("DR, RN, NRN, OOF, AutoReply" on
// meeting requests and mail sent through EWS), and it asks the
// *recipient* not to auto-reply rather than saying the mail is one.
// It only counts as a supporting signal: "All" (what Exchange puts on
// its own generated mail) turns a weak subject ("Absence: ...",
// "Vacation: ...") into auto_reply, and together with
// X-MS-Exchange-Inbox-Rules-Loop (an Inbox rule answered) it is an
// auto-reply by itself.
func classify(m *Message, root *enmime.Part) {
	h := root.Header
	report := reportType(root)
	if b, ok := bounceFromReport(m, root, report); ok {
		m.Kind, m.Bounce = KindBounce, b
		return
	}
	if report == "delivery-status" && onlySuccess(root) {
		// A success report: every recipient delivered, relayed or
		// expanded. (Delays go on to the bounce heuristics: a
		// delayed mail may still fail, and flags nothing yet.)
		m.Kind = KindAutoReply
		return
	}
	if looksLikeBounce(m, h) {
		m.Kind, m.Bounce = KindBounce, bounceFromText(m, root)
		return
	}
	if m.From != nil && strings.HasSuffix(strings.ToLower(m.From.Address), ".amazonaws.com") {
		switch mm := sesNotice.FindStringSubmatch(firstN(m.Text, 8000)); {
		case mm == nil:
		case mm[1] == "Bounce":
			m.Kind, m.Bounce = KindBounce, bounceFromText(m, root)
			return
		default:
			m.Kind = KindAutoReply
			return
		}
	}
	if explicitAutoReply(h) {
		m.Kind = KindAutoReply
		return
	}
	switch report {
	case "delivery-status", "feedback-report", "disposition-notification":
		// A DSN that is not a failure (delivered, relayed, delayed),
		// an abuse report, or a read receipt.
		m.Kind = KindAutoReply
		return
	}
	if isList(h) {
		m.Kind = KindList
		return
	}
	prec := strings.ToLower(strings.TrimSpace(h.Get("Precedence")))
	if prec == "bulk" || prec == "junk" {
		m.Kind = KindAutoReply
		return
	}
	if oofSubject(m.Subject, h) {
		m.Kind = KindAutoReply
		return
	}
	m.Kind = KindNormal
}

// reportType returns the report-type of a multipart/report root.
func reportType(root *enmime.Part) string {
	ct := root.Header.Get("Content-Type")
	mt, params := "", map[string]string(nil)
	var err error
	if mayBeReport(ct) {
		mt, params, _, err = mediatype.Parse(ct)
	}
	if err != nil || !strings.EqualFold(mt, "multipart/report") {
		// Some MTAs nest the report in a multipart/mixed.
		var rt string
		_ = root.DepthMatchFirst(func(p *enmime.Part) bool {
			switch p.ContentType {
			case "message/delivery-status", "message/global-delivery-status":
				rt = "delivery-status"
			case "message/feedback-report":
				rt = "feedback-report"
			case "message/disposition-notification":
				rt = "disposition-notification"
			}
			return rt != ""
		})
		return rt
	}
	return strings.ToLower(params["report-type"])
}

// mayBeReport reports whether mediatype.Parse could read ct as
// multipart/report: its tolerant repairs never put together a media
// type that the value does not spell, apart from dropping CRs, so
// without "report" (in any case) and without a CR it cannot (most
// mail: the root is not parsed a second time).
func mayBeReport(ct string) bool {
	if strings.IndexByte(ct, '\r') >= 0 {
		return true
	}
	for i := 0; i+len("report") <= len(ct); i++ {
		if strings.EqualFold(ct[i:i+len("report")], "report") {
			return true
		}
	}
	return false
}

func explicitAutoReply(h textproto.MIMEHeader) bool {
	if v := strings.ToLower(strings.TrimSpace(h.Get("Auto-Submitted"))); v != "" && !strings.HasPrefix(v, "no") {
		return true
	}
	for _, name := range []string{"X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Auto-Reply"} {
		if v := strings.ToLower(strings.TrimSpace(h.Get(name))); v != "" && v != "no" && v != "false" && v != "0" {
			return true
		}
	}
	if strings.EqualFold(strings.TrimSpace(h.Get("Precedence")), "auto_reply") {
		return true
	}
	if h.Get("X-Ms-Exchange-Inbox-Rules-Loop") != "" && suppressesAutoReplies(h) {
		return true
	}
	return false
}

func suppressesAutoReplies(h textproto.MIMEHeader) bool {
	v := strings.ToLower(h.Get("X-Auto-Response-Suppress"))
	return strings.Contains(v, "all") || strings.Contains(v, "oof") || strings.Contains(v, "autoreply")
}

func isList(h textproto.MIMEHeader) bool {
	if h.Get("List-Id") != "" {
		return true
	}
	prec := strings.ToLower(strings.TrimSpace(h.Get("Precedence")))
	if prec == "list" {
		return true
	}
	if h.Get("List-Unsubscribe") == "" {
		return false
	}
	if prec == "bulk" {
		return true
	}
	for _, name := range []string{"List-Post", "List-Archive", "List-Help", "List-Subscribe", "X-Mailing-List", "Mailing-List", "X-List"} {
		if h.Get(name) != "" {
			return true
		}
	}
	return false
}

var (
	// strongOOF are subject openings only auto-responders use.
	strongOOF = lazyregexp.New(`(?i)^\s*(?:auto(?:matic|matische|matisk|matisch)?[ -]?(?:reply|response|antwort|svar|antwoord)\b|autoreply|auto:|out of (?:the )?office\b|r[ée]ponse automatique|réponse en votre absence|absence du bureau|abwesenheitsnotiz|automatische antwort|respuesta autom[áa]tica|fuera de (?:la )?oficina|risposta automatica|fuori sede|resposta autom[áa]tica|frånvaro|autosvar|i am (?:currently )?out of (?:the )?office|on vacation\b|vacation reply|urlaubsabwesenheit)`)
	// weakOOF need a supporting header: a customer may write them.
	weakOOF = lazyregexp.New(`(?i)^\s*(?:absence|absent|abwesend|ausente|vacation|vacances|congés|urlaub)\s*:`)
)

func oofSubject(subject string, h textproto.MIMEHeader) bool {
	if mayMatchStrongOOF(subject) && strongOOF.MatchString(subject) {
		return true
	}
	if mayMatchWeakOOF(subject) && weakOOF.MatchString(subject) {
		return strings.Contains(strings.ToLower(h.Get("X-Auto-Response-Suppress")), "all") || emptyReturnPath(h)
	}
	return false
}

var (
	bounceSender  = lazyregexp.New(`(?i)^(?:mailer[-_]?daemon|post[-_]?master|mail[-_]?daemon|mdaemon|mailerdaemon|mail\.delivery|bounces?|double-bounce|nobody)@`)
	bounceName    = lazyregexp.New(`(?i)mail delivery (?:system|subsystem|service)|mailer[-_ ]daemon|postmaster|systemadministrator|mail administrator`)
	strongBounce  = lazyregexp.New(`(?i)undeliver(?:ed|able)\b|delivery status notification \((?:failure|delay)\)|mail delivery failed|returned mail\b|delivery (?:has )?failed|failure notice|delivery failure|non remis|unzustellbar|non recapitabile|no se puede entregar|message not delivered|could not be delivered|mail system error|delivery notification: delivery has failed|unable to deliver|rejected:|nondeliverable|delivery problem|warning: could not send`)
	weakBounce    = lazyregexp.New(`(?i)delivery|returned|failed|failure|undeliver|bounce|error|rejected|not delivered|problem|unzustellbar|zustellung|notification|delayed|warning|エラー|不達|未達`)
	bodyBounceHit = lazyregexp.New(`(?i)could not be delivered|delivery to the following recipient|did not reach the following recipient|permanent(?:ly)? (?:error|fatal)|user unknown|no such user|mailbox (?:unavailable|not found|full|is full)|recipient address rejected|delivery has failed|undeliverable|does not exist|unknown user|invalid (?:user|recipient)|\b5\d\d[ -]+(?:5\.\d|requested action)`)
	// sesNotice is an Amazon SES notification delivered through SNS.
	sesNotice = lazyregexp.New(`"notificationType"\s*:\s*"(Bounce|Complaint|Delivery)"`)
)

// The mayMatch functions below report false only when their regexp
// cannot match, so that most mail never compiles it (each `deskmail
// ingest -` process compiles the ones it runs): they look at the
// letters every alternative starts with or contains. None of those
// letters has a case fold outside ASCII (unicode.SimpleFold), and a
// non-ASCII byte where a letter is looked for goes to the regexp.

// asciiLower is s[i] lower-cased, 0x80 for any non-ASCII byte, and 0
// past the end.
func asciiLower(s string, i int) byte {
	switch {
	case i >= len(s):
		return 0
	case s[i] >= 0x80:
		return 0x80
	case 'A' <= s[i] && s[i] <= 'Z':
		return s[i] + 'a' - 'A'
	}
	return s[i]
}

// regexpSpace is what \s matches in Go's regexp.
const regexpSpace = "\t\n\f\r "

// mayMatchStrongOOF: every strongOOF alternative starts, after the
// leading \s*, with a, o, r, f, i, v or u, and the r ones with "ré",
// "ri", "rep" or "res" (so "Re: " never).
func mayMatchStrongOOF(subject string) bool {
	s := strings.TrimLeft(subject, regexpSpace)
	switch c := asciiLower(s, 0); c {
	case 0x80, 'a', 'o', 'f', 'i', 'v', 'u':
		return true
	case 'r':
		switch asciiLower(s, 1) {
		case 0x80, 'i':
			return true
		case 'e':
			c3 := asciiLower(s, 2)
			return c3 == 0x80 || c3 == 'p' || c3 == 's'
		}
	}
	return false
}

// mayMatchWeakOOF: every weakOOF alternative starts, after the leading
// \s*, with a, v, c or u, and a colon follows.
func mayMatchWeakOOF(subject string) bool {
	s := strings.TrimLeft(subject, regexpSpace)
	switch asciiLower(s, 0) {
	case 0x80, 'a', 'v', 'c', 'u':
		return strings.Contains(s, ":")
	}
	return false
}

// mayMatchBounceSender: every bounceSender alternative starts with m, p,
// b, d or n, and an @ follows.
func mayMatchBounceSender(addr string) bool {
	switch asciiLower(addr, 0) {
	case 0x80, 'm', 'p', 'b', 'd', 'n':
		return strings.Contains(addr, "@")
	}
	return false
}

// mayMatchBounceName: every bounceName alternative contains "ma"
// ("mail…", "postmaster", "systemadministrator").
func mayMatchBounceName(name string) bool {
	for i := 0; i+1 < len(name); i++ {
		if asciiLower(name, i) == 'm' && asciiLower(name, i+1) == 'a' {
			return true
		}
	}
	return false
}

// looksLikeBounce recognises bounces that are not RFC 3464 reports.
func looksLikeBounce(m *Message, h textproto.MIMEHeader) bool {
	if h.Get("X-Failed-Recipients") != "" {
		return true
	}
	fromDaemon := false
	if m.From != nil {
		fromDaemon = mayMatchBounceSender(m.From.Address) && bounceSender.MatchString(m.From.Address) ||
			mayMatchBounceName(m.From.Name) && bounceName.MatchString(m.From.Name)
	} else if strings.TrimSpace(headerJoin(h, "From")) != "" {
		from := decodeHeader(headerJoin(h, "From"), "")
		fromDaemon = mayMatchBounceName(from) && bounceName.MatchString(from)
	}
	subj := m.Subject
	if mayMatchStrongBounce(subj) && strongBounce.MatchString(subj) && (fromDaemon || !strings.HasPrefix(strings.ToLower(strings.TrimSpace(subj)), "re")) {
		// "Re: Undeliverable" from a person is a reply about a bounce.
		return fromDaemon || emptyReturnPath(h) || bodyBounceHit.MatchString(firstN(m.Text, 4000))
	}
	if fromDaemon && (weakBounce.MatchString(subj) || bodyBounceHit.MatchString(firstN(m.Text, 4000))) {
		return true
	}
	// A returned message with a failure text and subject, from any
	// sender (carriers send them from no-reply addresses).
	if returnsMessage(m) && weakBounce.MatchString(subj) && bodyBounceHit.MatchString(firstN(m.Text, 4000)) &&
		!forwardPrefix.MatchString(subj) {
		return true
	}
	return false
}

// strongBounceLiterals holds, lower-cased, a piece of text that every
// match of strongBounce contains; mayMatchStrongBounce checks for them
// before the regexp runs, on every subject.
var strongBounceLiterals = []string{"deliver", "returned mail", "failure notice", "non remis", "unzustellbar",
	"non recapitabile", "no se puede entregar", "mail system error", "rejected:", "warning: could not send"}

// mayMatchStrongBounce reports false only when strongBounce cannot
// match s. (?i) also folds U+017F (long s) to s and U+212A (Kelvin) to
// k; a subject with either goes to the regexp.
func mayMatchStrongBounce(s string) bool {
	if strings.Contains(s, "\u017f") || strings.Contains(s, "\u212a") {
		return true
	}
	lower := []byte(s)
	for i, c := range lower {
		if 'A' <= c && c <= 'Z' {
			lower[i] = c + 'a' - 'A'
		}
	}
	for _, lit := range strongBounceLiterals {
		if bytes.Contains(lower, []byte(lit)) {
			return true
		}
	}
	return false
}

var forwardPrefix = lazyregexp.New(`(?i)^\s*(?:fwd?|tr|wg|rv|fw)\s*:`)

func returnsMessage(m *Message) bool {
	for _, a := range m.Attachments {
		switch a.ContentType {
		case "message/rfc822", "text/rfc822-headers", "message/rfc822-headers", "message/global", "message/global-headers":
			return true
		}
	}
	return false
}

func emptyReturnPath(h textproto.MIMEHeader) bool {
	v := strings.TrimSpace(h.Get("Return-Path"))
	return v == "<>" || v == "< >"
}

func firstN(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// bounceFromReport reads an RFC 3464 report. It reports false unless
// at least one recipient failed (or no Action is given but the status
// is 4.x/5.x).
func bounceFromReport(m *Message, root *enmime.Part, report string) (*Bounce, bool) {
	if report != "delivery-status" {
		return nil, false
	}
	b := &Bounce{Recipients: []string{}}
	failed := false
	var fields []textproto.MIMEHeader
	if rep, err := dsn.ParseReport(root); err == nil && rep != nil {
		for _, r := range rep.DeliveryStatus.RecipientDSNs {
			fields = append(fields, textproto.MIMEHeader(r))
		}
	}
	if len(fields) == 0 {
		fields = statusFields(root)
	}
	for _, f := range fields {
		action := strings.ToLower(strings.TrimSpace(f.Get("Action")))
		status := statusCode(f.Get("Status"))
		if action == "failed" || (action == "" && strings.HasPrefix(status, "5")) {
			failed = true
			if r := dsnAddress(f.Get("Final-Recipient")); r != "" {
				b.Recipients = append(b.Recipients, r)
			} else if r := dsnAddress(f.Get("Original-Recipient")); r != "" {
				b.Recipients = append(b.Recipients, r)
			}
			if b.Status == "" {
				b.Status = status
			}
		}
	}
	if !failed {
		return nil, false
	}
	b.Permanent = strings.HasPrefix(b.Status, "5") || b.Status == ""
	b.OriginalMessageID = originalMessageID(m, root)
	return b, true
}

func onlySuccess(root *enmime.Part) bool {
	fields := statusFields(root)
	for _, f := range fields {
		switch strings.ToLower(strings.TrimSpace(f.Get("Action"))) {
		case "delivered", "relayed", "expanded":
		default:
			return false
		}
	}
	return len(fields) > 0
}

// statusFields reads delivery-status field blocks directly, for reports
// nested where dsn.ParseReport does not look.
func statusFields(root *enmime.Part) []textproto.MIMEHeader {
	var out []textproto.MIMEHeader
	_ = root.DepthMatchAll(func(p *enmime.Part) bool {
		if p.ContentType != "message/delivery-status" && p.ContentType != "message/global-delivery-status" {
			return false
		}
		br := bufio.NewReader(bytes.NewReader(p.Content))
		// Field blocks are separated by blank lines (RFC 3464 2.1).
		for i := 0; i < 100; i++ {
			if _, err := br.Peek(1); err != nil {
				break
			}
			h, err := enmime.ReadHeader(br, nopCollector{})
			if len(h) > 0 && (h.Get("Final-Recipient") != "" || h.Get("Original-Recipient") != "" || h.Get("Action") != "") {
				out = append(out, h)
			}
			if err != nil {
				break
			}
		}
		return false
	})
	return out
}

var statusRe = lazyregexp.New(`\b([245])\.(\d{1,3})\.(\d{1,3})\b`)

func statusCode(v string) string {
	if m := statusRe.FindString(v); m != "" {
		return m
	}
	return ""
}

// dsnAddress strips the address-type of a Final-Recipient field
// ("rfc822; user@example.com").
func dsnAddress(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[i+1:]
	}
	v = strings.Trim(strings.TrimSpace(v), "<>")
	if !strings.Contains(v, "@") {
		return ""
	}
	return v
}

var (
	quotedMsgID   = lazyregexp.New(`(?im)^[ \t>]*Message-ID:[ \t]*(<[^>\r\n]+>|\S+@\S+)`)
	textRecipient = lazyregexp.New(`(?m)^\s*<([^<>\s@]+@[^<>\s]+)>:?`)
	anyAddress    = lazyregexp.New(`[A-Za-z0-9._%+=-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`)
	smtpPermanent = lazyregexp.New(`\b5\d\d\b`)
)

// originalMessageID finds the Message-ID of the bounced message: in the
// returned message or its headers, else In-Reply-To/References, else a
// quoted "Message-ID:" line in the text.
func originalMessageID(m *Message, root *enmime.Part) string {
	var id string
	_ = root.DepthMatchFirst(func(p *enmime.Part) bool {
		switch p.ContentType {
		case "message/rfc822", "text/rfc822-headers", "message/rfc822-headers", "message/global", "message/global-headers":
			h, _ := enmime.ReadHeader(bufio.NewReader(bytes.NewReader(p.Content)), nopCollector{})
			if h != nil {
				if ids := parseMessageIDs(h.Get("Message-Id")); len(ids) > 0 {
					id = ids[0]
					return true
				}
			}
			if mm := quotedMsgID.FindSubmatch(p.Content); mm != nil {
				if ids := parseMessageIDs(string(mm[1])); len(ids) > 0 {
					id = ids[0]
					return true
				}
			}
		}
		return false
	})
	if id != "" {
		return id
	}
	if len(m.InReplyTo) > 0 {
		return m.InReplyTo[0]
	}
	if len(m.References) > 0 {
		return m.References[len(m.References)-1]
	}
	if mm := quotedMsgID.FindStringSubmatch(m.Text); mm != nil {
		if ids := parseMessageIDs(mm[1]); len(ids) > 0 {
			return ids[0]
		}
	}
	return ""
}

// bounceFromText fills a Bounce for a non-RFC 3464 bounce from
// X-Failed-Recipients, a delivery-status part if any, and the text.
func bounceFromText(m *Message, root *enmime.Part) *Bounce {
	b := &Bounce{Recipients: []string{}}
	for _, f := range statusFields(root) {
		if r := dsnAddress(f.Get("Final-Recipient")); r != "" {
			b.Recipients = append(b.Recipients, r)
		}
		if b.Status == "" {
			b.Status = statusCode(f.Get("Status"))
		}
	}
	if len(b.Recipients) == 0 {
		for _, v := range root.Header.Values("X-Failed-Recipients") {
			for _, a := range strings.Split(v, ",") {
				if a = strings.TrimSpace(a); strings.Contains(a, "@") {
					b.Recipients = append(b.Recipients, a)
				}
			}
		}
	}
	text := firstN(m.Text, 20000)
	if len(b.Recipients) == 0 {
		for _, mm := range textRecipient.FindAllStringSubmatch(text, 10) {
			b.Recipients = append(b.Recipients, mm[1])
		}
	}
	if len(b.Recipients) == 0 {
		own := ""
		if m.From != nil {
			own = strings.ToLower(m.From.Address)
		}
		for _, a := range anyAddress.FindAllString(text, 20) {
			if strings.ToLower(a) != own && !bounceSender.MatchString(a) {
				b.Recipients = append(b.Recipients, a)
				break
			}
		}
	}
	if b.Status == "" {
		b.Status = statusCode(text)
	}
	switch {
	case b.Status != "":
		b.Permanent = strings.HasPrefix(b.Status, "5")
	default:
		lower := strings.ToLower(text)
		b.Permanent = smtpPermanent.MatchString(text) || strings.Contains(lower, "permanent") ||
			!(strings.Contains(lower, "temporar") || strings.Contains(lower, "will retry") || strings.Contains(lower, "delayed"))
	}
	b.OriginalMessageID = originalMessageID(m, root)
	return b
}
