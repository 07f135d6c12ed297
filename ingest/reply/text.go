package reply

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxSigLines is how many non-quoted lines a loose signature delimiter
// ("--", "__", "—") may have below it. A longer tail is more likely
// reply text under a rule than a signature.
const maxSigLines = 15

// maxDepth bounds how often a forward with no note is unwrapped.
const maxDepth = 3

// TrimText returns the visible reply of a plain-text body: quote
// headers, quoted lines, forwarded history, signatures and mobile
// trailers removed. Line endings become "\n" and invalid UTF-8 becomes
// U+FFFD. The result is never empty unless text is blank: when
// everything looks like history, the trimmed original is returned. See
// the package documentation for the rules.
func TrimText(text string) string {
	return TrimTextFrom(text, Sender{})
}

// TrimTextFrom is [TrimText] for a mail whose sender is known: a block
// at the bottom that starts with the sender's name (see
// cutSenderSignature) is a signature too.
func TrimTextFrom(text string, from Sender) string {
	if !utf8.ValidString(text) {
		text = strings.ToValidUTF8(text, "\uFFFD")
	}
	if strings.IndexByte(text, '\r') >= 0 {
		text = strings.ReplaceAll(text, "\r\n", "\n")
		text = strings.ReplaceAll(text, "\r", "\n")
	}
	return trimBody(newBody(strings.Split(text, "\n")), 0, nameTokens(from))
}

// body is a text split into lines, with each line's quote status
// computed once.
type body struct {
	lines  []string
	quoted []bool
}

// newBody classifies the lines. Besides ">" lines, a "lazy" line
// counts as quoted: an unquoted line squeezed between two quoted
// lines, starting in lower case, below a long quoted line that stops
// mid-sentence. That is a quoted line some client re-wrapped without
// its ">".
func newBody(lines []string) *body {
	b := &body{lines: lines, quoted: make([]bool, len(lines))}
	for i, l := range lines {
		b.quoted[i] = isQuoted(l)
	}
	for i := 1; i+1 < len(lines); i++ {
		if b.quoted[i] || !b.quoted[i-1] || !isQuoted(lines[i-1]) || !b.quoted[i+1] {
			continue
		}
		prev := strings.TrimRight(lines[i-1], " \t")
		if len(prev) < 60 || strings.HasSuffix(prev, ".") || strings.HasSuffix(prev, "?") ||
			strings.HasSuffix(prev, "!") || strings.HasSuffix(prev, ":") {
			continue
		}
		if r, _ := utf8.DecodeRuneInString(strings.TrimLeft(lines[i], " \t")); unicode.IsLower(r) {
			b.quoted[i] = true
		}
	}
	return b
}

func (b *body) len() int { return len(b.lines) }

// sub returns lines [lo, hi) as a body.
func (b *body) sub(lo, hi int) *body {
	return &body{lines: b.lines[lo:hi], quoted: b.quoted[lo:hi]}
}

// q reports whether line i is quoted.
func (b *body) q(i int) bool { return b.quoted[i] }

// cutKind says what ended the reply.
type cutKind int

const (
	cutNone        cutKind = iota
	cutAttribution         // "On … wrote:" with unquoted history below
	cutHeaders             // an Outlook header block or a separator
)

func trimBody(b *body, depth int, names []string) string {
	cut, kind, bodyAt := findCut(b)
	reply := b.sub(0, cut)
	reply = cutSignature(reply)
	reply = dropTrailing(reply)
	if depth == 0 {
		// Below a forward the sign-off is the forwarded sender's.
		reply = dropTrailing(cutSenderSignature(reply, names))
	}
	reply = dropLeadingQuote(reply)
	if out := join(reply.lines); out != "" {
		return out
	}
	// Nothing above the history: a bare forward, a body that starts
	// with the attribution of unquoted history, or a mis-detection.
	if kind != cutNone && depth < maxDepth && bodyAt < b.len() {
		if out := trimBody(b.sub(bodyAt, b.len()), depth+1, nil); out != "" {
			return out
		}
	}
	return join(b.lines)
}

// join returns the lines without the blank lines around them.
func join(lines []string) string {
	start, end := 0, len(lines)
	for start < end && isBlank(lines[start]) {
		start++
	}
	for end > start && isBlank(lines[end-1]) {
		end--
	}
	if start == end {
		return ""
	}
	out := strings.Join(lines[start:end], "\n")
	return strings.TrimRight(out, " \t\u00a0")
}

// findCut returns the index of the first line of unquoted history (or
// b.len()), what kind of marker it is, and the index of the first line
// after the marker (where a forwarded body starts).
func findCut(b *body) (cut int, kind cutKind, bodyAt int) {
	text := false // reply text seen above
	for i := 0; i < b.len(); i++ {
		l := b.lines[i]
		if b.q(i) || len(l) > maxLine || isBlank(l) {
			continue
		}
		if sep, decorated := separatorPhrase(l); sep {
			j, ok := historyFollows(b, i+1)
			// "-----Original Message-----" ends the reply even with no
			// header below, unless the text above introduces it ("Outlook
			// adds this line:"), which is a reply discussing it.
			if ok || decorated && !introduced(b, i) {
				return i, cutHeaders, j
			}
			continue
		}
		if text && isTrailer(l) {
			// Mobile clients put their trailer between the reply and
			// the history, which they often do not mark at all.
			return i, cutAttribution, i + 1
		}
		if headerClass(l) > 0 {
			if end, ok := headerBlock(b, i); ok {
				return separatorAbove(b, i), cutHeaders, end
			}
		}
		if n := attributionAt(b, i, false); n > 0 {
			next := nextNonBlank(b, i+n)
			if next < b.len() && b.q(next) {
				i += n - 1 // the header of a ">" block, handled later
				continue
			}
			return i, cutAttribution, i + n
		}
		text = true
	}
	return b.len(), cutNone, b.len()
}

// introduced reports whether the last text line above i ends with a
// colon.
func introduced(b *body, i int) bool {
	for j := i - 1; j >= 0 && j >= i-3; j-- {
		if t := strings.TrimSpace(bounded(b.lines[j])); t != "" {
			return strings.HasSuffix(t, ":")
		}
	}
	return false
}

func nextNonBlank(b *body, i int) int {
	for i < b.len() && isBlank(b.lines[i]) {
		i++
	}
	return i
}

// historyFollows reports whether quoted history starts within a few
// lines below a separator, and where its body starts.
func historyFollows(b *body, i int) (int, bool) {
	seen := 0
	for ; i < b.len() && seen < 4; i++ {
		l := b.lines[i]
		if isBlank(l) {
			continue
		}
		seen++
		if b.q(i) {
			return i, true
		}
		if headerClass(l) > 0 {
			end, _ := headerRun(b, i)
			return end, true
		}
		if attributionAt(b, i, false) > 0 {
			return i, true
		}
	}
	return i, false
}

// headerRun scans header lines starting at i. It returns the index
// after the block (blank lines skipped) and a bitmask of what was
// seen: 1 another key, 2 a sender key. Continuation lines (a wrapped
// value) are allowed, two in a row at most; a blank line ends the run.
func headerRun(b *body, i int) (end, seen int) {
	cont := 0
	count := 0
	j := i
	for ; j < b.len() && j < i+16; j++ {
		l := b.lines[j]
		if b.q(j) || isBlank(l) {
			break
		}
		if c := headerClass(l); c > 0 {
			seen |= c
			count++
			cont = 0
			continue
		}
		cont++
		if cont > 2 {
			break
		}
	}
	end = j - cont
	if count < 2 {
		seen = 0
	}
	return nextNonBlank(b, end), seen
}

// headerBlock reports whether an Outlook-style header block starts at
// i: at least two header lines, one of them naming the sender.
func headerBlock(b *body, i int) (end int, ok bool) {
	end, seen := headerRun(b, i)
	return end, seen == 3
}

// separatorAbove moves a cut at i up over a rule line ("_____",
// "-----") directly above it, blank lines in between allowed.
func separatorAbove(b *body, i int) int {
	j := i - 1
	for j >= 0 && isBlank(b.lines[j]) {
		j--
	}
	if j >= 0 && isSeparatorOnly(b.lines[j]) {
		return j
	}
	return i
}

// attributionAt returns how many lines (1 to 3) starting at i form a
// quote attribution, or 0.
func attributionAt(b *body, i int, loose bool) int {
	first := b.lines[i]
	if b.q(i) || len(first) > maxLine || isBlank(first) {
		return 0
	}
	var sb strings.Builder
	s := "" // the lines so far, trimmed and joined by blanks
	for n := 1; n <= 3 && i+n-1 < b.len(); n++ {
		l := b.lines[i+n-1]
		if n == 1 {
			s = strings.TrimSpace(l) // no copy for the common one-line case
		} else {
			if isBlank(l) || len(l) > maxLine || b.q(i+n-1) && !closesAddress(s, l) {
				return 0
			}
			if n == 2 {
				sb.WriteString(s)
			}
			sb.WriteByte(' ')
			sb.WriteString(strings.TrimSpace(l))
			s = sb.String()
		}
		if endsLikeAttribution(s) && attributionEnd(strings.ToLower(s), loose) {
			return n
		}
		if n == 1 && !mayContinue(s) {
			return 0
		}
	}
	return 0
}

// closesAddress reports whether l is the ">:" or "> wrote:" that ends
// an address wrapped after its "<" (it looks like a quoted line).
func closesAddress(prev, l string) bool {
	t := strings.TrimSpace(l)
	return len(t) <= 24 && strings.HasSuffix(t, ":") &&
		strings.LastIndexByte(prev, '<') > strings.LastIndexByte(prev, '>')
}

// mayContinue reports whether a line could be the first part of a
// wrapped attribution: it starts like one and does not end a sentence
// (a short abbreviation such as "Apr." or "28." may end it).
func mayContinue(s string) bool {
	if s == "" || strings.HasSuffix(s, "?") || strings.HasSuffix(s, "!") {
		return false
	}
	if strings.HasSuffix(s, ".") {
		w := s[strings.LastIndexAny(s, " \t")+1:]
		if utf8.RuneCountInString(w) > 6 {
			return false
		}
	}
	return hasDigit(s) || strings.Contains(s, "@") || strings.HasSuffix(s, "<")
}

// cutSignature removes a signature block: from the first delimiter
// line that has reply text above it.
func cutSignature(b *body) *body {
	text := false
	for i, l := range b.lines {
		if b.q(i) || isBlank(l) {
			continue
		}
		if k := sigDelimiter(l); k != sigNone && text {
			if k == sigStrict || unquotedBelow(b, i+1) <= maxSigLines {
				return b.sub(0, i)
			}
			continue
		}
		if k := nameSignature(l); k && text && unquotedBelow(b, i+1) <= 4 {
			return b.sub(0, i)
		}
		text = true
	}
	return b
}

// unquotedBelow counts the non-blank unquoted lines from line i on,
// stopping after maxSigLines+1.
func unquotedBelow(b *body, i int) int {
	n := 0
	for ; i < b.len(); i++ {
		if !b.q(i) && !isBlank(b.lines[i]) {
			n++
			if n > maxSigLines {
				break
			}
		}
	}
	return n
}

// dropTrailing removes, from the bottom up, blank lines, quotes and
// their attribution, rule lines and mobile trailers.
func dropTrailing(b *body) *body {
	end := b.len()
	quoteBelow := false
	for end > 0 {
		l := b.lines[end-1]
		switch {
		case b.q(end - 1):
			end--
			quoteBelow = true
			continue
		case isBlank(l), isSeparatorOnly(l), isTrailer(l):
			end--
			continue
		}
		if quoteBelow {
			if n := attributionEndingAt(b, end, true); n > 0 {
				end -= n
				quoteBelow = false
				continue
			}
		}
		break
	}
	return b.sub(0, end)
}

// dropLeadingQuote removes an attributed quote at the top of a
// bottom-posted reply: "On … wrote:", a ">" block, then reply text with
// no further quote. An unattributed leading quote is kept (it may be a
// quotation the writer typed), and so is the first quote of an
// interleaved reply.
func dropLeadingQuote(b *body) *body {
	i := nextNonBlank(b, 0)
	if i >= b.len() {
		return b
	}
	n := attributionAt(b, i, true)
	if n == 0 {
		return b
	}
	j := nextNonBlank(b, i+n)
	if j >= b.len() || !b.q(j) {
		return b
	}
	for j < b.len() && (b.q(j) || isBlank(b.lines[j])) {
		j++
	}
	if j == b.len() {
		return b
	}
	for k := j; k < b.len(); k++ {
		if b.q(k) {
			return b
		}
	}
	return b.sub(j, b.len())
}

// attributionEndingAt returns how many lines (1 to 3) ending just
// before end form an attribution, or 0. The longest match wins, and an
// attribution may run on into the lines below end (a wrapped ">:").
func attributionEndingAt(b *body, end int, loose bool) int {
	for n := 3; n >= 1; n-- {
		if end-n < 0 {
			continue
		}
		if k := attributionAt(b, end-n, loose); k >= n {
			return n
		}
	}
	return 0
}
