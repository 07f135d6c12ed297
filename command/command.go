// Package command finds the email commands agents write in their mail
// and removes them from the text the customer sees. It knows only the
// syntax; what a command means (which status "résolu" is, which agent
// "bob" is) is decided by the threading package.
//
// Two syntaxes are accepted:
//
//   - Freshdesk's block, anywhere in the new text, possibly wrapped over
//     several lines by the mail client, with straight or curly quotes:
//     @Simonsays "status":"resolved", "priority":"high" @Simonsays
//   - line commands at the top of the body (Zendesk's mail API style),
//     one per line, case-insensitive, with an optional colon:
//     #status resolved
//     #assign bob@example.com
//     #tags +vip -spam
//
// Line commands stop at the first line that is neither blank nor a
// command, so a "#1 priority" later in the text is prose, not a command.
package command

import (
	"strings"
	"unicode"

	"github.com/deskmail/deskmail/internal/lazyregexp"
)

// Command is one key/value an agent wrote.
type Command struct {
	// Key is lower-cased and trimmed ("status", "priority", "assign"…).
	Key string
	// Value is trimmed, original case.
	Value string
	// Line is the command as the agent wrote it, for error messages.
	Line string
	// Block is true for the @Simonsays syntax.
	Block bool
}

// Parsed is the result of Parse.
type Parsed struct {
	Commands []Command
	// Text is the input without the commands (what the customer sees).
	Text string
	// Problems are syntax errors (an unclosed block, a pair that is not
	// "key":"value"), each quoting the offending text.
	Problems []string
}

// maxInput bounds the text searched for commands; commands live at the
// top of a mail, and the bound keeps hostile input cheap.
const maxInput = 256 << 10

var (
	blockRE    = lazyregexp.New(`(?is)@simonsays\b(.*?)(@simonsays\b|\z)`)
	pairRE     = lazyregexp.New(`(?s)^\s*"([^"]*)"\s*:\s*"([^"]*)"\s*$`)
	lineCmdRE  = lazyregexp.New(`^\s*#([A-Za-z][A-Za-z_\-]*)\s*:?\s*(.*?)\s*$`)
	quoteFixer = strings.NewReplacer("“", `"`, "”", `"`, "„", `"`, "«", `"`, "»", `"`, "″", `"`, "\u00a0", " ")
)

// Parse finds the commands in text.
func Parse(text string) Parsed {
	if len(text) > maxInput {
		// Keep the head for commands; the rest is passed through.
		head, tail := text[:maxInput], text[maxInput:]
		p := Parse(head)
		p.Text += tail
		return p
	}
	var p Parsed
	text = strings.ReplaceAll(text, "\r\n", "\n")

	// Freshdesk blocks.
	text = blockRE.ReplaceAllStringFunc(text, func(block string) string {
		m := blockRE.FindStringSubmatch(block)
		if m[2] == "" {
			p.Problems = append(p.Problems, "the @Simonsays block is not closed: "+oneLine(block, 120))
			return ""
		}
		body := quoteFixer.Replace(m[1])
		for _, pair := range splitPairs(body) {
			if strings.TrimSpace(pair) == "" {
				continue
			}
			pm := pairRE.FindStringSubmatch(pair)
			if pm == nil || normKey(pm[1]) == "" {
				p.Problems = append(p.Problems, `not a "key":"value" pair: `+oneLine(pair, 120))
				continue
			}
			p.Commands = append(p.Commands, Command{
				Key:   normKey(pm[1]),
				Value: strings.Join(strings.Fields(pm[2]), " "),
				Line:  oneLine(`"`+pm[1]+`":"`+pm[2]+`"`, 200),
				Block: true,
			})
		}
		return ""
	})

	// Line commands at the top.
	lines := strings.Split(text, "\n")
	i := 0
	for ; i < len(lines); i++ {
		l := strings.TrimRightFunc(lines[i], unicode.IsSpace)
		if strings.TrimSpace(l) == "" {
			continue
		}
		m := lineCmdRE.FindStringSubmatch(quoteFixer.Replace(l))
		if m == nil {
			break
		}
		p.Commands = append(p.Commands, Command{Key: normKey(m[1]), Value: m[2], Line: strings.TrimSpace(l)})
	}
	if i > 0 {
		lines = lines[i:]
	}
	p.Text = strings.TrimLeftFunc(strings.Join(lines, "\n"), unicode.IsSpace)
	p.Text = strings.TrimRightFunc(p.Text, unicode.IsSpace)
	if p.Text != "" {
		p.Text += "\n"
	}
	return p
}

// splitPairs splits a block body on commas outside quotes.
func splitPairs(s string) []string {
	var out []string
	var b strings.Builder
	in := false
	for _, r := range s {
		switch {
		case r == '"':
			in = !in
			b.WriteRune(r)
		case r == ',' && !in:
			out = append(out, b.String())
			b.Reset()
		case r == '\n' || r == '\r':
			b.WriteRune(' ')
		default:
			b.WriteRune(r)
		}
	}
	return append(out, b.String())
}

func normKey(k string) string {
	k = strings.ToLower(strings.Join(strings.Fields(k), " "))
	return strings.NewReplacer("-", "_", " ", "_").Replace(k)
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}
