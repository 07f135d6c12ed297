package reply

import (
	"strings"
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
	if !utf8.ValidString(text) {
		text = strings.ToValidUTF8(text, "\uFFFD")
	}
	if strings.IndexByte(text, '\r') >= 0 {
		text = strings.ReplaceAll(text, "\r\n", "\n")
		text = strings.ReplaceAll(text, "\r", "\n")
	}
	return trimLines(strings.Split(text, "\n"), 0)
}

// cutKind says what ended the reply.
type cutKind int

const (
	cutNone        cutKind = iota
	cutAttribution         // "On … wrote:" with unquoted history below
	cutHeaders             // an Outlook header block or a separator
)

func trimLines(lines []string, depth int) string {
	cut, kind, bodyAt := findCut(lines)
	reply := lines[:cut]
	reply = cutSignature(reply)
	reply = dropTrailing(reply)
	if out := join(reply); out != "" {
		return out
	}
	// Nothing above the history: a bare forward or a mis-detection.
	if kind == cutHeaders && depth < maxDepth && bodyAt < len(lines) {
		if out := trimLines(lines[bodyAt:], depth+1); out != "" {
			return out
		}
	}
	return join(lines)
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
// len(lines)), what kind of marker it is, and for header blocks the
// index of the first line after the header (where a forwarded body
// starts).
func findCut(lines []string) (cut int, kind cutKind, bodyAt int) {
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if isBlank(l) || isQuoted(l) || len(l) > maxLine {
			continue
		}
		if separatorPhrase(l) {
			if j, ok := historyFollows(lines, i+1); ok {
				return i, cutHeaders, j
			}
			continue
		}
		if headerClass(l) > 0 {
			if end, ok := headerBlock(lines, i); ok {
				return separatorAbove(lines, i), cutHeaders, end
			}
		}
		if n := attributionAt(lines, i, false); n > 0 {
			next := nextNonBlank(lines, i+n)
			if next < len(lines) && isQuoted(lines[next]) {
				i += n - 1 // the header of a ">" block, handled later
				continue
			}
			return i, cutAttribution, i + n
		}
	}
	return len(lines), cutNone, len(lines)
}

func nextNonBlank(lines []string, i int) int {
	for i < len(lines) && isBlank(lines[i]) {
		i++
	}
	return i
}

// historyFollows reports whether quoted history starts within a few
// lines below a separator, and where its body starts.
func historyFollows(lines []string, i int) (int, bool) {
	seen := 0
	for ; i < len(lines) && seen < 4; i++ {
		l := lines[i]
		if isBlank(l) {
			continue
		}
		seen++
		if isQuoted(l) {
			return i, true
		}
		if headerClass(l) > 0 {
			end, _ := headerRun(lines, i)
			return end, true
		}
		if attributionAt(lines, i, false) > 0 {
			return i, true
		}
	}
	return i, false
}

// headerRun scans header lines starting at i. It returns the index
// after the block (blank lines skipped) and a bitmask of what was
// seen: 1 another key, 2 a sender key. Continuation lines (a wrapped
// value) are allowed, two in a row at most; a blank line ends the run.
func headerRun(lines []string, i int) (end, seen int) {
	cont := 0
	count := 0
	j := i
	for ; j < len(lines) && j < i+16; j++ {
		l := lines[j]
		if isBlank(l) || isQuoted(l) {
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
	return nextNonBlank(lines, end), seen
}

// headerBlock reports whether an Outlook-style header block starts at
// i: at least two header lines, one of them naming the sender.
func headerBlock(lines []string, i int) (end int, ok bool) {
	end, seen := headerRun(lines, i)
	return end, seen == 3
}

// separatorAbove moves a cut at i up over a rule line ("_____",
// "-----") directly above it, blank lines in between allowed.
func separatorAbove(lines []string, i int) int {
	j := i - 1
	for j >= 0 && isBlank(lines[j]) {
		j--
	}
	if j >= 0 && isSeparatorOnly(lines[j]) {
		return j
	}
	return i
}

// attributionAt returns how many lines (1 to 3) starting at i form a
// quote attribution, or 0.
func attributionAt(lines []string, i int, loose bool) int {
	first := lines[i]
	if len(first) > maxLine || isBlank(first) || isQuoted(first) {
		return 0
	}
	var b strings.Builder
	for n := 1; n <= 3 && i+n-1 < len(lines); n++ {
		l := lines[i+n-1]
		if n > 1 {
			if isBlank(l) || isQuoted(l) || len(l) > maxLine {
				return 0
			}
			b.WriteByte(' ')
		}
		b.WriteString(strings.TrimSpace(l))
		s := b.String()
		// An attribution ends with a colon or a verb; look no further
		// than its end.
		if attributionEnd(strings.ToLower(s), loose) {
			return n
		}
		if n == 1 && !mayContinue(s) {
			return 0
		}
	}
	return 0
}

// mayContinue reports whether a line could be the first part of a
// wrapped attribution: it starts like one and does not end a sentence.
func mayContinue(s string) bool {
	if s == "" || strings.HasSuffix(s, ".") || strings.HasSuffix(s, "?") || strings.HasSuffix(s, "!") {
		return false
	}
	return hasDigit(s) || strings.Contains(s, "@") || strings.HasSuffix(s, "<")
}

// cutSignature removes a signature block: from the first delimiter
// line that has reply text above it.
func cutSignature(lines []string) []string {
	text := false
	for i, l := range lines {
		if isBlank(l) {
			continue
		}
		if isQuoted(l) {
			continue
		}
		if k := sigDelimiter(l); k != sigNone && text {
			if k == sigStrict || unquotedBelow(lines[i+1:]) <= maxSigLines {
				return lines[:i]
			}
			continue
		}
		text = true
	}
	return lines
}

func unquotedBelow(lines []string) int {
	n := 0
	for _, l := range lines {
		if !isBlank(l) && !isQuoted(l) {
			n++
			if n > maxSigLines {
				break
			}
		}
	}
	return n
}

// dropTrailing removes, from the bottom up, blank lines, ">" quotes and
// their attribution, rule lines and mobile trailers.
func dropTrailing(lines []string) []string {
	end := len(lines)
	quoteBelow := false
	for end > 0 {
		l := lines[end-1]
		switch {
		case isBlank(l), isSeparatorOnly(l):
			end--
			continue
		case isQuoted(l):
			end--
			quoteBelow = true
			continue
		case isTrailer(l):
			end--
			continue
		}
		if quoteBelow {
			if n := attributionEndingAt(lines, end, true); n > 0 {
				end -= n
				quoteBelow = false
				continue
			}
		}
		break
	}
	return lines[:end]
}

// attributionEndingAt returns how many lines (1 to 3) ending just
// before end form an attribution, or 0.
func attributionEndingAt(lines []string, end int, loose bool) int {
	for n := 1; n <= 3 && end-n >= 0; n++ {
		if attributionAt(lines, end-n, loose) == n {
			return n
		}
	}
	return 0
}
