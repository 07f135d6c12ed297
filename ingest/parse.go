package ingest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/textproto"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gogs/chardet"
	"github.com/jhillyerd/enmime/v2"
	"github.com/jhillyerd/enmime/v2/mediatype"
	"golang.org/x/text/encoding/charmap"

	"github.com/deskmail/deskmail/ingest/reply"
	"github.com/deskmail/deskmail/internal/lazyregexp"
)

// ParseOptions tunes Parse.
type ParseOptions struct {
	// Now is the arrival time. Parse does not substitute it for a
	// missing or unparseable Date (Message.Date stays nil and a warning
	// is added); it is carried for callers and future rules.
	Now time.Time
	// MaxAttachmentBytes, when above 0, is the largest attachment
	// (decoded) kept in Message.Attachments; a larger one is left out
	// with a warning (it stays in the raw message).
	MaxAttachmentBytes int64
}

// ErrNotMail is returned (wrapped) by Parse for input that is not a
// mail message at all: empty, binary, or without a header.
var ErrNotMail = errors.New("not a mail message")

// maxWarnings bounds the warnings kept for one message; hostile input
// can otherwise produce one per MIME part.
const maxWarnings = 50

// mimeOptions configure enmime for tolerance: malformed parts are
// skipped with an error recorded, a multipart without boundary is read
// as a single part, and corrupt base64 keeps what decoded. enmime does
// the transfer decoding but not the charset conversion (see
// parser.mediaType): partString converts with go-message's charset
// tables, where it can also catch mislabelled parts. Each Parse adds
// its own parser.mediaType (mimeParser).
var mimeOptions = []enmime.Option{
	enmime.SkipMalformedParts(true),
	enmime.MultipartWOBoundaryAsSinglePart(true),
	enmime.SetReadPartErrorPolicy(keepPartialBase64),
	enmime.DisableTextConversion(true),
	enmime.DisableCharacterDetection(true),
	enmime.MaxStoredPartErrors(maxWarnings),
	enmime.MaxPartDepth(maxDepth),
}

// mimeParser returns the enmime parser of one Parse call.
func (p *parser) mimeParser() *enmime.Parser {
	if p.mime == nil {
		p.mime = enmime.NewParser(append(mimeOptions[:len(mimeOptions):len(mimeOptions)], enmime.SetCustomParseMediaType(p.mediaType))...)
	}
	return p.mime
}

// mediaType parses a media type like enmime does, but tells enmime
// that every text part is UTF-8 so that it hands over the
// transfer-decoded bytes unconverted and never runs its charset guesser
// (which overrides correct labels and is slow). The declared charset is
// remembered for partCharset, by header value: enmime parses every
// part's Content-Type once, and parsing it again cost 5% of Parse.
func (p *parser) mediaType(ctype string) (string, map[string]string, []string, error) {
	mt, params, invalid, err := parseMediaType(ctype)
	if p.ctypeCharsets == nil {
		p.ctypeCharsets = map[string]string{}
	}
	p.ctypeCharsets[ctype] = declaredCharset(params, err)
	if err == nil && strings.HasPrefix(strings.ToLower(mt), "text/") {
		if params == nil {
			params = map[string]string{}
		}
		params["charset"] = "utf-8"
	}
	return mt, params, invalid, err
}

// parseMediaType is enmime's tolerant media type parser, as deskmail
// uses it.
func parseMediaType(ctype string) (string, map[string]string, []string, error) {
	return mediatype.ParseWithOptions(ctype, mediatype.ParseOptions{StripMediaTypeInvalidCharacters: true})
}

// declaredCharset is the charset parameter of a parsed media type,
// lower-cased and unquoted ("" when the type did not parse).
func declaredCharset(params map[string]string, err error) string {
	if err != nil {
		return ""
	}
	return strings.ToLower(strings.Trim(strings.TrimSpace(params["charset"]), `"'`))
}

// partCharset returns the charset a part declares, lower-cased.
func partCharset(part *enmime.Part) string {
	_, params, _, err := parseMediaType(part.Header.Get("Content-Type"))
	return declaredCharset(params, err)
}

// partCharset is partCharset remembered per part: the header is parsed
// once per part, not once per use, and not at all when enmime's parse
// of the same value was seen (mediaType).
func (p *parser) partCharset(part *enmime.Part) string {
	if cs, ok := p.charsets[part]; ok {
		return cs
	}
	if p.charsets == nil {
		p.charsets = map[*enmime.Part]string{}
	}
	cs, ok := p.ctypeCharsets[part.Header.Get("Content-Type")]
	if !ok {
		cs = partCharset(part)
	}
	p.charsets[part] = cs
	return cs
}

// keepPartialBase64 keeps what decoded before corrupt base64, for
// attachments as well as text (enmime's own policy drops attachments).
func keepPartialBase64(_ *enmime.Part, err error) bool {
	return enmime.IsBase64CorruptInputError(err)
}

// Parse reads one raw RFC 5322 message into a Message. It fails only
// for input that is not a mail at all (see ErrNotMail); anything else
// parses best-effort, and what was wrong is listed in Warnings. Parse
// keeps references into raw (attachment contents are decoded copies,
// raw itself is not copied) and is safe for concurrent use.
func Parse(raw []byte, opts ParseOptions) (msg *Message, err error) {
	defer func() {
		// Parse must not take the process down on hostile input; a
		// panic in a library becomes an error for this message only.
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("parse: internal error on malformed input: %v", r)
		}
	}()
	body, err := mailStart(raw)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	m := &Message{
		InReplyTo:   []string{},
		References:  []string{},
		ReplyTo:     []Address{},
		To:          []Address{},
		Cc:          []Address{},
		Attachments: []Attachment{},
		Warnings:    []string{},
		Kind:        KindNormal,
		ContentHash: hex.EncodeToString(sum[:]),
	}
	p := &parser{m: m, maxAttachment: opts.MaxAttachmentBytes}
	root, err := p.mimeParser().ReadParts(bytes.NewReader(body))
	if err != nil {
		root, err = fallbackParts(body)
		if err != nil {
			return nil, fmt.Errorf("parse: %w: %v", ErrNotMail, err)
		}
		m.warn("mime: structure unreadable, body kept as plain text")
	}
	p.root = root
	p.headers()
	p.body()
	p.generateID(body)
	classify(m, root)
	p.collectPartErrors()
	m.ReplyText = visibleReply(p.rawHTML, m.Text, p.textFromHTML, replySender(m.From))
	return m, nil
}

// mailStart checks that raw looks like a message and returns it from
// its first header line: an mbox "From " line and up to three junk
// lines before the header (a pasted "---- Original message ----") are
// skipped.
func mailStart(raw []byte) ([]byte, error) {
	b := raw
	for len(b) > 0 && (b[0] == '\r' || b[0] == '\n' || b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("parse: %w: empty input", ErrNotMail)
	}
	if bytes.HasPrefix(b, []byte("From ")) {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	rest := b
	for skip := 0; skip <= 3; skip++ {
		line, next, _ := bytes.Cut(rest, []byte("\n"))
		if isHeaderLine(line) {
			// A junk line must be followed by two header lines.
			if skip == 0 || isHeaderLine(firstLine(next)) {
				return rest, nil
			}
		}
		if len(next) == 0 || len(bytes.TrimSpace(line)) == 0 {
			break
		}
		rest = next
	}
	return nil, fmt.Errorf("parse: %w: no header field on the first line", ErrNotMail)
}

func firstLine(b []byte) []byte {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return line
}

// isHeaderLine reports whether line starts a header field: a name of
// printable ASCII, then a colon.
func isHeaderLine(line []byte) bool {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return false
	}
	name := bytes.TrimRight(line[:colon], " \t")
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// fallbackParts builds a single text part when enmime cannot read the
// structure: the header as far as it goes, the rest as text.
func fallbackParts(b []byte) (*enmime.Part, error) {
	br := bufio.NewReader(bytes.NewReader(b))
	h, err := enmime.ReadHeader(br, nopCollector{})
	if err != nil && h == nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	rest, _ := readAllBuf(br)
	p := enmime.NewPart("text/plain")
	p.Header = h
	p.Content = rest
	return p, nil
}

func readAllBuf(br *bufio.Reader) ([]byte, error) {
	var buf bytes.Buffer
	_, err := buf.ReadFrom(br)
	return buf.Bytes(), err
}

type nopCollector struct{}

func (nopCollector) AddError(string, string, ...any)   {}
func (nopCollector) AddWarning(string, string, ...any) {}

// parser holds the state of one Parse call.
type parser struct {
	m        *Message
	root     *enmime.Part
	charset  string // how raw 8-bit header bytes are read (headerCharsets)
	rawHTML  string // decoded, unsanitized HTML body
	seenWarn map[string]bool
	// textFromHTML is set when Text was derived from the HTML (an
	// HTML-only mail).
	textFromHTML bool
	// charsets remembers each part's declared charset.
	charsets map[*enmime.Part]string
	// ctypeCharsets is the declared charset of each Content-Type value
	// enmime parsed (see mediaType).
	ctypeCharsets map[string]string
	// mime is the enmime parser of this call (see mimeParser).
	mime *enmime.Parser
	// maxAttachment is ParseOptions.MaxAttachmentBytes.
	maxAttachment int64
	// uuDecoded are the parts whose uuencoding the walker decoded.
	uuDecoded map[*enmime.Part]bool
}

func (m *Message) warn(format string, args ...any) {
	if len(m.Warnings) >= maxWarnings {
		return
	}
	w := strings.ToValidUTF8(fmt.Sprintf(format, args...), "\uFFFD")
	for _, old := range m.Warnings {
		if old == w {
			return
		}
	}
	m.Warnings = append(m.Warnings, w)
}

// headers fills the header-derived fields.
func (p *parser) headers() {
	m, h := p.m, p.root.Header
	if h == nil {
		h = textproto.MIMEHeader{}
	}
	m.Headers = map[string][]string(h)
	p.charset = p.headerCharsets(h, p.declaredCharsets(p.root))

	m.Subject = decodeHeader(h.Get("Subject"), p.charset)

	if v := headerJoin(h, "From"); v != "" {
		list, warns := parseAddressList("from", v, p.charset)
		for _, w := range warns {
			m.warn("%s", w)
		}
		if len(list) > 0 {
			a := list[0]
			m.From = &a
		} else if len(warns) == 0 {
			m.warn("from: no address in %q", decodeHeader(v, p.charset))
		}
	} else {
		m.warn("from: header missing")
	}
	for _, f := range []struct {
		name string
		dst  *[]Address
	}{{"Reply-To", &m.ReplyTo}, {"To", &m.To}, {"Cc", &m.Cc}} {
		list, warns := parseAddressList(strings.ToLower(f.name), headerJoin(h, f.name), p.charset)
		*f.dst = list
		for _, w := range warns {
			m.warn("%s", w)
		}
	}

	if ids := parseMessageIDs(h.Get("Message-Id")); len(ids) > 0 {
		m.MessageID = ids[0]
	}
	m.InReplyTo = parseMessageIDs(strings.Join(h.Values("In-Reply-To"), " "))
	m.References = parseMessageIDs(strings.Join(h.Values("References"), " "))

	switch v := h.Get("Date"); {
	case strings.TrimSpace(v) == "":
		m.warn("date: header missing")
	default:
		if t, ok := parseDate(v); ok {
			m.Date = &t
		} else {
			m.warn("date: unparseable %q", toUTF8(v, ""))
		}
	}
}

// headerJoin joins repeated header fields (some mailers send two To:).
func headerJoin(h textproto.MIMEHeader, name string) string {
	vs := h.Values(name)
	if len(vs) <= 1 {
		return h.Get(name)
	}
	return strings.Join(vs, ", ")
}

// declaredCharsets lists the charsets declared in the message, as a
// comma-separated list with multi-byte (CJK) charsets first, used to
// read raw 8-bit header bytes: a GB2312 subject in a mail whose first
// part is ISO-8859-1 is read as GB2312 when it decodes cleanly.
func (ps *parser) declaredCharsets(root *enmime.Part) string {
	var multi, single []string
	seen := map[string]bool{}
	_ = root.DepthMatchAll(func(p *enmime.Part) bool {
		for _, cs := range []string{ps.partCharset(p)} {
			if cs == "" || cs == "us-ascii" || cs == "utf-8" || seen[cs] || strings.ContainsAny(cs, ",") {
				continue
			}
			seen[cs] = true
			switch {
			case strings.Contains(cs, "2022-jp"):
				multi = append(multi, "shift_jis", "euc-jp")
			case strings.Contains(cs, "gb") || strings.Contains(cs, "big5") || strings.Contains(cs, "jis") ||
				strings.HasPrefix(cs, "euc") || strings.Contains(cs, "ks_c") || strings.Contains(cs, "949") || strings.Contains(cs, "936"):
				multi = append(multi, cs)
			default:
				single = append(single, cs)
			}
		}
		return false
	})
	return strings.Join(append(multi, single...), ",")
}

// headerCharsets chooses how raw 8-bit header bytes are read: the
// declared charsets (declared, from declaredCharsets), with chardet's
// reading of the raw header text in front when it is confident and
// differs from what was declared — a KOI8-R or Shift_JIS subject in a
// mail that declares ISO-8859-1 or nothing. Within the Latin family a
// declared charset beats the detector, which cannot tell them apart on
// a few accented letters. A confident detection that overrides a
// declaration is a warning.
func (p *parser) headerCharsets(h textproto.MIMEHeader, declared string) string {
	var raw []byte
	for _, name := range []string{"Subject", "From", "To", "Cc", "Reply-To"} {
		for _, v := range h.Values(name) {
			if hasHighBytes([]byte(v)) && !utf8.ValidString(v) {
				raw = append(append(raw, v...), '\n')
			}
		}
	}
	if len(raw) == 0 || bytes.Contains(raw, []byte("\x1b$")) {
		return declared
	}
	res, err := chardet.NewTextDetector().DetectBest(raw)
	if err != nil || res == nil || res.Confidence < 40 {
		return declared
	}
	cs := strings.ToLower(res.Charset)
	if out, ok := decodeCharset(cs, raw); !ok || !utf8.ValidString(out) || strings.ContainsRune(out, utf8.RuneError) {
		return declared
	}
	list := strings.Split(declared, ",")
	if declared == "" {
		return cs
	}
	for _, d := range list {
		if d == cs {
			return cs + "," + declared
		}
	}
	if latinCharset(cs) && latinCharset(list[len(list)-1]) {
		return declared
	}
	p.m.warn("charset: header bytes are not in the declared %s, read as %s", declared, cs)
	return cs + "," + declared
}

// latinCharset reports the single-byte charsets of Western and Central
// European text, which a detector confuses with each other.
func latinCharset(cs string) bool {
	switch cs {
	case "iso-8859-1", "iso-8859-2", "iso-8859-9", "iso-8859-15", "windows-1250", "windows-1252", "latin1":
		return true
	}
	return false
}

// generateID gives a message without Message-ID a stable one, derived
// from the header fields that identify it and the body (trace fields
// such as Received are left out so that two deliveries of the same
// message get the same ID).
func (p *parser) generateID(body []byte) {
	if p.m.MessageID != "" {
		return
	}
	h := sha256.New()
	for _, name := range []string{"From", "To", "Cc", "Subject", "Date", "In-Reply-To", "References"} {
		for _, v := range p.root.Header.Values(name) {
			fmt.Fprintf(h, "%s: %s\n", name, strings.Join(strings.Fields(v), " "))
		}
	}
	h.Write([]byte{0})
	if i := headerEnd(body); i >= 0 {
		h.Write(body[i:])
	}
	p.m.MessageID = hex.EncodeToString(h.Sum(nil))[:40] + "@deskmail.invalid"
	p.m.GeneratedID = true
	p.m.warn("message-id: missing, generated %s", p.m.MessageID)
}

// headerEnd returns the offset of the body (after the blank line) or -1.
func headerEnd(b []byte) int {
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		if j := bytes.Index(b, []byte("\n\r\n")); j >= 0 && j < i {
			return j + 3
		}
		return i + 2
	}
	if j := bytes.Index(b, []byte("\n\r\n")); j >= 0 {
		return j + 3
	}
	return -1
}

// collectPartErrors copies enmime's per-part problems into Warnings.
func (p *parser) collectPartErrors() {
	_ = p.root.DepthMatchAll(func(part *enmime.Part) bool {
		for _, e := range part.Errors {
			if e.Name == enmime.ErrorMissingContentType && part == p.root {
				continue // plain RFC 822 mail needs none
			}
			if e.Name == enmime.ErrorNestingTooDeep {
				continue // the walker's warning says more (unparsed)
			}
			if e.Name == enmime.ErrorContentEncoding && p.uuDecoded[part] {
				continue // the walker decoded the uuencoding
			}
			p.m.warn("mime: %s: %s", e.Name, toUTF8(e.Detail, ""))
		}
		return false
	})
}

// body walks the MIME tree and fills Text, HTML and Attachments.
func (p *parser) body() {
	w := &walker{p: p}
	w.walk(p.root, 0)
	m := p.m
	m.Text = strings.Join(w.texts, "\n\n")
	p.rawHTML = strings.Join(w.htmls, "\n")
	if p.rawHTML != "" {
		m.HTML = sanitizeHTML(p.rawHTML)
		if strings.TrimSpace(m.Text) == "" {
			m.Text = htmlToText(p.rawHTML)
			p.textFromHTML = true
		}
	}
	m.Attachments = p.attachments(w.atts)
}

// walker sorts the leaves of a MIME tree into body text, body HTML and
// attachments.
type walker struct {
	p     *parser
	texts []string
	htmls []string
	atts  []*enmime.Part
}

// maxDepth is how deeply multiparts may nest below the root: real mail
// nests a handful of levels (a forward of a forward of a signed mail
// is about ten), and every level makes parsing the bytes below it
// slower. A deeper multipart is not parsed (enmime.MaxPartDepth); the
// walker keeps the last text found in it (see unparsed).
const maxDepth = 32

func (w *walker) walk(part *enmime.Part, depth int) {
	if part == nil {
		return
	}
	if depth > maxDepth+1 {
		// enmime stops at maxDepth+1; this guards the recursion only.
		w.p.m.warn("mime: part %s nested deeper than %d levels; left out", part.PartID, maxDepth)
		return
	}
	if part.FirstChild == nil && tooDeep(part) {
		w.unparsed(part)
		return
	}
	if part.FirstChild != nil {
		if part.ContentType == "multipart/alternative" {
			w.alternative(part, depth)
			return
		}
		for c := part.FirstChild; c != nil; c = c.NextSibling {
			w.walk(c, depth+1)
		}
		return
	}
	if uuEncoded(part) && w.uuPart(part) {
		return
	}
	switch bodyKind(part) {
	case "text":
		if t := w.uuInline(w.p.partText(part)); strings.TrimSpace(t) != "" {
			w.texts = append(w.texts, t)
		}
	case "html":
		w.htmls = append(w.htmls, w.p.partText(part))
	case "skip":
	default:
		w.atts = append(w.atts, part)
	}
}

// tooDeep reports whether enmime left part unparsed for its depth.
func tooDeep(part *enmime.Part) bool {
	for _, e := range part.Errors {
		if e.Name == enmime.ErrorNestingTooDeep {
			return true
		}
	}
	return false
}

// unparsed handles a multipart nested too deeply to be parsed: its
// body is kept only in the raw message, and the last text part found
// in it (its deepest text, in hostile nesting) becomes body text.
func (w *walker) unparsed(part *enmime.Part) {
	t := w.p.deepestText(part.Content)
	if t != "" {
		w.texts = append(w.texts, t)
		w.p.m.warn("mime: part %s nested deeper than %d levels; its last text part is kept as the text, the rest only in the raw message", part.PartID, maxDepth)
		return
	}
	w.p.m.warn("mime: part %s nested deeper than %d levels and holds no readable text; kept only in the raw message", part.PartID, maxDepth)
}

// deepestText returns the decoded text of the last text/plain (else
// text/html) part in b, the unparsed body of a multipart: b is cut at
// every boundary delimiter line ("--…") and the pieces are read as
// single parts from the last one back, at most 256 non-empty pieces.
func (p *parser) deepestText(b []byte) string {
	var pieces [][]byte
	start := -1 // the preamble before the first delimiter is no part
	for i := 0; i <= len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		end := len(b)
		if j >= 0 {
			end = i + j + 1
		}
		if bytes.HasPrefix(b[i:end], []byte("--")) {
			if start >= 0 {
				pieces = append(pieces, b[start:i])
			}
			start = end
		}
		if j < 0 {
			break
		}
		i = end
	}
	if start >= 0 && start < len(b) {
		pieces = append(pieces, b[start:])
	}
	html := ""
	tries := 0
	for k := len(pieces) - 1; k >= 0 && tries < 256; k-- {
		// The line break before a delimiter belongs to the delimiter
		// (RFC 2046 §5.1.1).
		piece := bytes.TrimLeft(pieces[k], "\r\n")
		piece = bytes.TrimSuffix(bytes.TrimSuffix(piece, []byte("\n")), []byte("\r"))
		if len(bytes.TrimSpace(piece)) == 0 {
			continue
		}
		tries++
		part, err := p.mimeParser().ReadParts(bytes.NewReader(piece))
		if err != nil || part.FirstChild != nil {
			continue
		}
		switch bodyKind(part) {
		case "text":
			if t := p.partText(part); strings.TrimSpace(t) != "" {
				return t
			}
		case "html":
			if html == "" {
				html = htmlToText(p.partText(part))
			}
		}
	}
	return html
}

// alternative picks the text/plain alternative for Text and the last
// HTML-bearing alternative for HTML (RFC 2046 5.1.4: the last is
// preferred). Attachments of the chosen alternatives are kept, as are
// non-body alternatives such as text/calendar invitations.
func (w *walker) alternative(part *enmime.Part, depth int) {
	var textSub, htmlSub *walker
	var others []*walker
	for c := part.FirstChild; c != nil; c = c.NextSibling {
		if c.FirstChild == nil && altVariant(c.ContentType) {
			continue
		}
		sub := &walker{p: w.p}
		sub.walk(c, depth+1)
		switch {
		case len(sub.htmls) > 0:
			if htmlSub != nil && htmlSub != textSub {
				others = append(others, &walker{atts: htmlSub.atts})
			}
			htmlSub = sub
			if textSub == nil && len(sub.texts) > 0 {
				textSub = sub
			}
		case len(sub.texts) > 0 && textSub == nil:
			textSub = sub
		default:
			others = append(others, &walker{atts: sub.atts})
		}
	}
	seen := map[*enmime.Part]bool{}
	for _, s := range append([]*walker{textSub, htmlSub}, others...) {
		if s == nil {
			continue
		}
		for _, a := range s.atts {
			if !seen[a] {
				seen[a] = true
				w.atts = append(w.atts, a)
			}
		}
	}
	if textSub != nil {
		w.texts = append(w.texts, textSub.texts...)
	}
	if htmlSub != nil {
		w.htmls = append(w.htmls, htmlSub.htmls...)
	}
}

// altVariant reports body renderings that an alternative may carry
// besides text and HTML and that deskmail does not use.
func altVariant(ct string) bool {
	switch ct {
	case "text/watch-html", "text/enriched", "text/richtext", "text/x-amp-html":
		return true
	}
	return false
}

// bodyKind says whether a leaf part is body text ("text"), body HTML
// ("html"), to be ignored ("skip") or an attachment ("").
func bodyKind(p *enmime.Part) string {
	if strings.EqualFold(p.Disposition, "attachment") || p.FileName != "" {
		if len(p.Content) == 0 && p.FileName == "" {
			return "skip"
		}
		return ""
	}
	switch ct := p.ContentType; {
	case ct == "text/plain", ct == "":
		return "text"
	case ct == "text/html":
		return "html"
	case strings.HasPrefix(ct, "multipart/"):
		// A multipart without children: either its boundary was
		// missing (the content is the body) or it was empty.
		if len(bytes.TrimSpace(p.Content)) > 0 {
			return "text"
		}
		return "skip"
	}
	if len(p.Content) == 0 {
		return "skip"
	}
	return ""
}

// partText returns the decoded text of a body part as valid UTF-8 with
// LF line ends, reflowed when it is format=flowed.
func (p *parser) partText(part *enmime.Part) string {
	s, lf := p.partString(part)
	if !lf {
		s = strings.ReplaceAll(s, "\r\n", "\n")
	}
	s = strings.ReplaceAll(s, "\x00", "")
	if part.ContentType == "text/plain" || part.ContentType == "" {
		if _, params, _, err := mediatype.Parse(part.Header.Get("Content-Type")); err == nil &&
			strings.EqualFold(params["format"], "flowed") {
			s = decodeFlowed(s, strings.EqualFold(params["delsp"], "yes"))
		}
	}
	return s
}

// partString decodes a text part's bytes to valid UTF-8. The declared
// charset is used through go-message's tables, except that bytes which
// are valid UTF-8 with multi-byte sequences are taken as UTF-8 whatever
// the label says (legacy text practically never validates as UTF-8).
// Unlabelled or undecodable text is read by the HTML meta charset,
// then chardet, then Windows-1252. Each repair adds a warning. lf
// reports that CRLF line ends were already made LF (lfString: the
// common paths copy the bytes once for both).
func (p *parser) partString(part *enmime.Part) (s string, lf bool) {
	b := part.Content
	cs := p.partCharset(part)
	// ASCII is valid UTF-8: utf8.Valid only has to look at text with a
	// high byte.
	high := hasHighBytes(b)
	valid := !high || utf8.Valid(b)
	if cs == "" && part.ContentType == "text/html" {
		if m := metaCharset.FindSubmatch(firstBytes(b, 4096)); m != nil {
			if _, err := charsetReader(string(m[1]), bytes.NewReader(nil)); err != nil {
				p.m.warn("charset: part %s has unknown charset %q in its HTML", part.PartID, m[1])
			}
		}
	}
	if cs != "" && !utf8OrASCII(cs) {
		// Checks the name only; building the reader costs 16 KB, so the
		// common names are not checked this way.
		if _, err := charsetReader(cs, bytes.NewReader(nil)); err != nil {
			p.m.warn("charset: part %s has unknown charset %q", part.PartID, cs)
			cs = "unknown"
		}
	}
	if esc := bytes.IndexByte(b, 0x1b); esc >= 0 && (bytes.Contains(b[esc:], []byte("\x1b$")) || bytes.Contains(b[esc:], []byte("\x1b("))) {
		// ISO-2022-JP escapes, labelled or not.
		return decodeJapanese(b), false
	}
	if valid && !high && !sevenBitCharset(cs) {
		return lfString(b), true
	}
	switch cs {
	case "unknown":
		if valid {
			return fixC1(lfString(b)), true
		}
	case "", "utf-8", "utf8", "us-ascii", "ascii", "ansi_x3.4-1968", "unicode-1-1-utf-8":
		if valid {
			if cs != "" && !strings.HasPrefix(cs, "utf") && !strings.HasPrefix(cs, "unicode") {
				p.m.warn("charset: part %s declared %q but is UTF-8", part.PartID, cs)
			}
			return fixC1(lfString(b)), true
		}
	default:
		if valid {
			p.m.warn("charset: part %s declared %q but is UTF-8", part.PartID, cs)
			return fixC1(lfString(b)), true
		}
		if out, ok := decodeCharset(cs, b); ok && utf8.ValidString(out) {
			return fixC1(out), false
		}
	}
	if part.ContentType == "text/html" {
		if m := metaCharset.FindSubmatch(firstBytes(b, 4096)); m != nil {
			if out, ok := decodeCharset(string(m[1]), b); ok && utf8.ValidString(out) &&
				!strings.ContainsRune(out, utf8.RuneError) {
				return fixC1(out), false
			}
		}
	}
	if res, err := chardet.NewTextDetector().DetectBest(highLines(b, 64<<10)); err == nil && res != nil && res.Confidence >= 50 {
		if out, ok := decodeCharset(res.Charset, b); ok && utf8.ValidString(out) &&
			!strings.ContainsRune(out, utf8.RuneError) {
			p.m.warn("charset: part %s declared %q, read as %s", part.PartID, cs, strings.ToLower(res.Charset))
			return fixC1(out), false
		}
	}
	p.m.warn("charset: part %s declared %q is not valid, read as windows-1252", part.PartID, cs)
	return toUTF8(string(b), ""), false
}

// lfString is strings.ReplaceAll(string(b), "\r\n", "\n") with one
// copy of b instead of two.
func lfString(b []byte) string {
	crlf := []byte("\r\n")
	n := bytes.Count(b, crlf)
	if n == 0 {
		return string(b)
	}
	var sb strings.Builder
	sb.Grow(len(b) - n)
	for {
		i := bytes.Index(b, crlf)
		if i < 0 {
			break
		}
		sb.Write(b[:i])
		sb.WriteByte('\n')
		b = b[i+2:]
	}
	sb.Write(b)
	return sb.String()
}

// sevenBitCharset reports charsets that encode non-ASCII text in ASCII
// bytes and so must be decoded even when no byte is 8-bit.
func sevenBitCharset(cs string) bool {
	return strings.Contains(cs, "2022") || strings.Contains(cs, "utf-7") || strings.Contains(cs, "utf7") || strings.Contains(cs, "hz-gb")
}

// highLines returns the lines of b that hold 8-bit bytes, up to max
// bytes: what chardet needs, without the ASCII bulk that dilutes it.
func highLines(b []byte, max int) []byte {
	var out []byte
	for len(b) > 0 && len(out) < max {
		line, rest, _ := bytes.Cut(b, []byte("\n"))
		if hasHighBytes(line) {
			out = append(out, line...)
			out = append(out, '\n')
		}
		b = rest
	}
	return out
}

// hasHighBytes reports whether b holds a byte of 0x80 or above. It
// tests eight bytes at a time: it runs over every text part.
func hasHighBytes(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b)&0x8080808080808080 != 0 {
			return true
		}
		b = b[8:]
	}
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

var metaCharset = lazyregexp.New(`(?i)<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)`)

func firstBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// fixC1 maps C1 control characters (U+0080-U+009F), which appear when
// Windows-1252 text was read as ISO-8859-1, to the Windows-1252
// characters they stand for (U+0080 -> €).
func fixC1(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r >= 0x80 && r <= 0x9f }) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r >= 0x80 && r <= 0x9f {
			if d := charmap.Windows1252.DecodeByte(byte(r)); d != utf8.RuneError {
				return d
			}
		}
		return r
	}, s)
}

// visibleReply composes reply_text. An HTML-only mail is trimmed by
// the quote markup in its decoded HTML (gmail_quote, divRplyFwdMsg,
// blockquote type=cite…). A mail with its own text alternative is
// trimmed by that text's quote headers and '>' lines; its HTML is
// parsed for markup only when the text showed none, so the common
// reply costs one HTML parse (sanitizing) instead of two.
func visibleReply(rawHTML, text string, textFromHTML bool, from reply.Sender) string {
	var trimmedText string
	if rawHTML != "" && !textFromHTML {
		if trimmedText = reply.TrimTextFrom(text, from); trimmedText != strings.TrimSpace(text) {
			return trimmedText
		}
	}
	if rawHTML != "" {
		if trimmed, removed := reply.TrimHTML(rawHTML); removed {
			return reply.TrimTextFrom(htmlToText(trimmed), from)
		}
	}
	if trimmedText != "" {
		return trimmedText
	}
	return reply.TrimTextFrom(text, from)
}

// replySender is the From address as the reply trimmer wants it.
func replySender(a *Address) reply.Sender {
	if a == nil {
		return reply.Sender{}
	}
	return reply.Sender{Name: a.Name, Address: a.Address}
}

var cidRef = lazyregexp.New(`(?i)cid:([^"'\s>)]+)`)

// attachments turns attachment parts into Attachments with safe names.
func (p *parser) attachments(parts []*enmime.Part) []Attachment {
	out := make([]Attachment, 0, len(parts))
	cids := map[string]bool{}
	for _, part := range parts {
		if part.Header.Get("Content-Id") != "" {
			// Only scan the HTML when some part can be referenced.
			for _, m := range cidRef.FindAllStringSubmatch(p.rawHTML, -1) {
				cids[strings.ToLower(m[1])] = true
			}
			break
		}
	}
	used := map[string]int{}
	for _, part := range parts {
		if p.maxAttachment > 0 && int64(len(part.Content)) > p.maxAttachment {
			p.m.warn("attachment: %q (%s, %d bytes) is larger than max_attachment_bytes (%d); kept only in the raw message",
				strings.ToValidUTF8(part.FileName, "\uFFFD"), strings.ToLower(part.ContentType), len(part.Content), p.maxAttachment)
			continue
		}
		a := Attachment{
			ContentType:      strings.ToLower(part.ContentType),
			Content:          part.Content,
			Size:             len(part.Content),
			ContentID:        contentID(part.Header.Get("Content-Id")),
			OriginalFilename: strings.ToValidUTF8(part.FileName, "\uFFFD"),
		}
		if a.ContentType == "" {
			a.ContentType = "application/octet-stream"
		}
		if a.OriginalFilename == "" || strings.Contains(a.OriginalFilename, "\uFFFD") {
			if n := rfc2231Name(part.Header); n != "" {
				a.OriginalFilename = n
			}
		}
		disp := strings.ToLower(part.Disposition)
		switch {
		case disp == "inline":
			a.Inline = true
		case disp == "attachment":
		case a.ContentID != "" && (strings.HasPrefix(a.ContentType, "image/") ||
			(part.Parent != nil && part.Parent.ContentType == "multipart/related")):
			a.Inline = true
		}
		if a.ContentID != "" && cids[strings.ToLower(a.ContentID)] && disp != "attachment" {
			a.Inline = true
		}
		a.Filename = SafeFilename(a.OriginalFilename)
		if a.ContentType == "message/rfc822" || a.ContentType == "message/global" {
			if a.Filename == "" {
				a.Filename = SafeFilename(embeddedSubject(part.Content))
			}
			if a.Filename == "" {
				a.Filename = "forwarded-message"
			}
			if !strings.HasSuffix(strings.ToLower(a.Filename), ".eml") {
				a.Filename = truncateFilename(a.Filename, maxFilenameBytes-4) + ".eml"
			}
		}
		if a.Filename == "" {
			a.Filename = "attachment" + extensionFor(a.ContentType)
			if n := used[a.Filename]; n > 0 {
				a.Filename = fmt.Sprintf("attachment-%d%s", n+1, extensionFor(a.ContentType))
			}
			used["attachment"+extensionFor(a.ContentType)]++
		}
		if a.Filename != a.OriginalFilename && a.OriginalFilename != "" {
			p.m.warn("attachment: file name %q made safe as %q", a.OriginalFilename, a.Filename)
		}
		out = append(out, a)
	}
	return out
}

// contentID strips the angle brackets and blanks of a Content-ID.
func contentID(v string) string {
	v = strings.TrimSpace(v)
	v = strings.TrimPrefix(v, "<")
	v = strings.TrimSuffix(v, ">")
	return strings.TrimSpace(v)
}

// embeddedSubject returns the decoded Subject of an attached message.
func embeddedSubject(b []byte) string {
	h, err := enmime.ReadHeader(bufio.NewReader(bytes.NewReader(b)), nopCollector{})
	if err != nil || h == nil {
		return ""
	}
	return decodeHeader(h.Get("Subject"), "")
}

var rfc2231Param = lazyregexp.New(`(?i)\b(?:file)?name\*(?:0\*?)?\s*=\s*"?([A-Za-z0-9_.:-]+)'[^']*'([^";\s]*)`)

// rfc2231Name decodes an RFC 2231 extended file name in a charset the
// standard library does not handle (it only knows UTF-8 and US-ASCII),
// such as filename*=iso-8859-1”caf%E9.txt. Continuations with
// percent-encoding (name*0*=, name*1*=) are joined first.
func rfc2231Name(h textproto.MIMEHeader) string {
	for _, field := range []string{"Content-Disposition", "Content-Type"} {
		v := h.Get(field)
		m := rfc2231Param.FindStringSubmatch(v)
		if m == nil {
			continue
		}
		cs, enc := m[1], m[2]
		// Join continuations name*1*=..., name*2*=...
		for i := 1; i < 100; i++ {
			re := regexp.MustCompile(fmt.Sprintf(`(?i)\b(?:file)?name\*%d\*?\s*=\s*"?([^";\s]*)`, i))
			c := re.FindStringSubmatch(v)
			if c == nil {
				break
			}
			enc += c[1]
		}
		raw, err := percentDecode(enc)
		if err != nil {
			continue
		}
		if out, ok := decodeCharset(cs, raw); ok {
			return strings.ToValidUTF8(out, "\uFFFD")
		}
	}
	return ""
}

func percentDecode(s string) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			v, err := hex.DecodeString(s[i+1 : i+3])
			if err != nil {
				return nil, fmt.Errorf("bad escape %q: %w", s[i:i+3], err)
			}
			out = append(out, v[0])
			i += 2
			continue
		}
		out = append(out, s[i])
	}
	return out, nil
}

// utf8OrASCII reports whether cs names UTF-8 or US-ASCII.
func utf8OrASCII(cs string) bool {
	switch cs {
	case "utf-8", "utf8", "us-ascii", "ascii", "ansi_x3.4-1968", "unicode-1-1-utf-8":
		return true
	}
	return false
}
