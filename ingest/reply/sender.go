package reply

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Sender is who wrote a mail, as its From header names them. Their
// name at the bottom of a reply marks a signature that no "-- " line
// introduces ("Thank you,\nNoam", "Gina Smith\ngina@example.com\n
// (555) 346-9947").
type Sender struct {
	Name    string // display name, may be empty
	Address string // addr-spec, may be empty
}

// Limits of a sender-name signature: how many non-blank lines it may
// have below the name line, and how long each of its lines may be.
const (
	maxNameSigBelow = 8
	maxNameSigLine  = 60
)

// genericName lists words of display names and local parts that name
// a role, not a person, and so never mark a signature.
var genericName = map[string]bool{
	"support": true, "team": true, "info": true, "admin": true, "service": true,
	"customer": true, "customers": true, "noreply": true, "reply": true, "mail": true,
	"the": true, "and": true, "via": true, "sales": true, "help": true, "desk": true,
	"contact": true, "office": true, "from": true, "mr": true, "mrs": true, "ms": true,
	"dr": true, "de": true, "la": true, "le": true, "van": true, "von": true, "der": true,
}

// nameTokens returns the lower-cased words of the sender's display
// name (or, without one, of the local part of the address) that can
// identify them in a sign-off: at least two letters, not a role word.
func nameTokens(s Sender) []string {
	src := s.Name
	if strings.TrimSpace(src) == "" {
		src = s.Address
		if at := strings.LastIndexByte(src, '@'); at >= 0 {
			src = src[:at]
		}
	}
	var out []string
	for _, w := range strings.FieldsFunc(src, func(r rune) bool { return !unicode.IsLetter(r) }) {
		w = strings.ToLower(w)
		if utf8.RuneCountInString(w) >= 2 && !genericName[w] {
			out = append(out, w)
		}
	}
	return out
}

// isNameLine reports whether l is a sign-off naming the sender: one
// to five words, each capitalised or an initial or title ("John E.
// Doe, Ph.D."), one of them a word of the sender's name. Talon's
// annotation prefix "#sig#" and leading punctuation are ignored.
func isNameLine(l string, names []string) bool {
	if len(names) == 0 {
		return false
	}
	t := strings.TrimLeftFunc(l, func(r rune) bool { return !unicode.IsLetter(r) })
	t = strings.TrimPrefix(t, "sig#")
	f := strings.Fields(t)
	if len(f) == 0 || len(f) > 5 {
		return false
	}
	named := false
	for _, w := range f {
		r, _ := utf8.DecodeRuneInString(w)
		if !unicode.IsUpper(r) {
			return false
		}
		for _, p := range strings.FieldsFunc(w, func(r rune) bool { return !unicode.IsLetter(r) }) {
			p = strings.ToLower(p)
			for _, n := range names {
				if p == n {
					named = true
				}
			}
		}
	}
	return named
}

// valedictions are the closing words that may stand alone on the line
// above a name ("Thanks" / "John"); a short line ending in a comma
// counts too.
var valedictions = map[string]bool{
	"thanks": true, "thank you": true, "thanks again": true, "many thanks": true,
	"regards": true, "best": true, "best regards": true, "kind regards": true,
	"warm regards": true, "cheers": true, "sincerely": true, "yours": true,
	"best wishes": true, "cordialement": true, "merci": true, "bien à vous": true,
	"gruß": true, "grüße": true, "viele grüße": true, "mit freundlichen grüßen": true,
	"saludos": true, "un saludo": true, "atentamente": true, "groeten": true,
}

// isValediction reports whether l is a closing such as "Thank you,".
func isValediction(l string) bool {
	t := strings.TrimSpace(l)
	if utf8.RuneCountInString(t) > 40 {
		return false
	}
	if strings.HasSuffix(t, ",") && len(strings.Fields(t)) <= 4 {
		return true
	}
	return valedictions[strings.ToLower(strings.TrimRight(t, ",.!"))]
}

// cutSenderSignature removes a signature that starts with the sender's
// name: a name line near the bottom, with at most maxNameSigBelow short
// lines below it, set off from the reply text above by a blank line, a
// valediction right above it (which goes with it) or a rule line a few
// short lines above it (where the cut starts). Reply text must remain
// above, and the line above the cut must not end in a colon ("Please
// ship to:" introduces an address, it does not sign off).
func cutSenderSignature(b *body, names []string) *body {
	if len(names) == 0 {
		return b
	}
	// The bottom block: non-blank, unquoted, short lines.
	var block []int
	for i := b.len() - 1; i >= 0; i-- {
		l := b.lines[i]
		if isBlank(l) {
			continue
		}
		if b.q(i) || utf8.RuneCountInString(strings.TrimSpace(bounded(l))) > maxNameSigLine {
			break
		}
		block = append(block, i)
		if len(block) > maxNameSigBelow+4 {
			break
		}
	}
	// block runs bottom-up; find the topmost name line within reach.
	name := -1
	for k, i := range block {
		if k <= maxNameSigBelow && isNameLine(b.lines[i], names) {
			name = k
		}
	}
	if name < 0 {
		return b
	}
	n := block[name]
	cut, setOff := n, false
	switch {
	case n > 0 && !b.q(n-1) && isValediction(b.lines[n-1]):
		cut, setOff = n-1, true
	default:
		for k := name + 1; k < len(block) && k <= name+3; k++ {
			if s := block[k]; isSeparatorOnly(b.lines[s]) && len(strings.TrimSpace(b.lines[s])) >= 4 {
				cut, setOff = s, true
				break
			}
		}
	}
	if !setOff && (n == 0 || !isBlank(b.lines[n-1])) {
		return b
	}
	above := prevNonBlank(b, cut)
	if above < 0 || strings.HasSuffix(strings.TrimSpace(b.lines[above]), ":") {
		return b
	}
	return b.sub(0, cut)
}

// prevNonBlank is the index of the last non-blank line above line i,
// or -1.
func prevNonBlank(b *body, i int) int {
	for i--; i >= 0; i-- {
		if !isBlank(b.lines[i]) {
			return i
		}
	}
	return -1
}
