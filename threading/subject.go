package threading

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/deskmail/deskmail/internal/lazyregexp"
)

// SubjectToken is the ticket token put in subjects, "[#123]" by default.
type SubjectToken struct {
	prefix, suffix string
	re             *regexp.Regexp
}

// NewSubjectToken compiles a token format in which {id} stands for the
// ticket number, such as "[#{id}]" or "[ACME-{id}]".
func NewSubjectToken(format string) (*SubjectToken, error) {
	i := strings.Index(format, "{id}")
	if i < 0 {
		return nil, fmt.Errorf("threading: subject token %q has no {id}", format)
	}
	prefix, suffix := format[:i], format[i+len("{id}"):]
	if strings.TrimSpace(prefix+suffix) == "" {
		return nil, fmt.Errorf("threading: subject token %q needs text around {id}", format)
	}
	// Mail clients sometimes add or drop a space inside the brackets or
	// change the case of the prefix; tolerate both.
	re, err := regexp.Compile(`(?i)` + loose(prefix) + `\s*(\d{1,12})\s*` + loose(suffix))
	if err != nil {
		return nil, fmt.Errorf("threading: subject token %q: %w", format, err)
	}
	return &SubjectToken{prefix: prefix, suffix: suffix, re: re}, nil
}

func loose(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r == ' ' {
			b.WriteString(`\s*`)
			continue
		}
		b.WriteString(regexp.QuoteMeta(string(r)))
	}
	return b.String()
}

// Format returns the token for a ticket.
func (s *SubjectToken) Format(id int64) string {
	return s.prefix + strconv.FormatInt(id, 10) + s.suffix
}

// Find returns the ticket number of the last token in subject (the
// newest, when a subject carries a forwarded ticket's token too).
func (s *SubjectToken) Find(subject string) (int64, bool) {
	all := s.re.FindAllStringSubmatch(subject, -1)
	if len(all) == 0 {
		return 0, false
	}
	id, err := strconv.ParseInt(all[len(all)-1][1], 10, 64)
	if err != nil || id <= 0 {
		return 0, false
	}
	return id, true
}

// Strip removes every token from subject.
func (s *SubjectToken) Strip(subject string) string {
	return strings.Join(strings.Fields(s.re.ReplaceAllString(subject, " ")), " ")
}

// Tag returns subject with the ticket's token appended once: an
// existing token is not duplicated.
func (s *SubjectToken) Tag(subject string, id int64) string {
	if got, ok := s.Find(subject); ok && got == id {
		return subject
	}
	subject = strings.TrimSpace(s.Strip(subject))
	if subject == "" {
		return s.Format(id)
	}
	return subject + " " + s.Format(id)
}

// replyPrefix matches one reply or forward prefix as mail clients write
// them in English, French, German, Spanish, Dutch, Italian, Portuguese,
// the Nordic languages and others, with optional counters ("Re[2]:",
// "RE^3:") and the French space before the colon ("Réf :", "TR :").
var replyPrefix = lazyregexp.New(`(?i)^\s*(re|r|aw|antw|antwort|wg|fw|fwd|tr|trs|réf|ref|rép|rep|réponse|sv|vs|vl|vb|ynt|odp|pd|rif|i|r|res|rv|enc|fs|doorst|ant|atb|bls|ha|hv|ilt|vá|tr|πρθ|απ|σχετ|ответ|отв|переслать|пер|回复|转发|答复|轉寄|回覆|返信|転送)(\s*\[\d+\]|\s*\^\d+|\s*\(\d+\))?\s*[:：]\s*`)

// replyPrefixBracketed matches "[External]"-style tags that mail
// gateways add in front of the subject; they are kept out of the base.
var replyPrefixBracketed = lazyregexp.New(`^\s*\[(ext|external|extern|externe|spam|suspicious)\]\s*`)

// BaseSubject strips stacked reply/forward prefixes ("Re: AW: Fwd:"),
// gateway tags and surrounding space (RFC 5256 §2.1 base subject, with
// the prefixes real clients use in many languages).
func BaseSubject(subject string) string {
	s := strings.TrimSpace(subject)
	for range 20 {
		// Neither regexp can match without its colon or bracket: most
		// subjects never compile them (each `deskmail ingest -`
		// process compiles the ones it runs).
		var loc []int
		if strings.ContainsAny(s, ":：") {
			loc = replyPrefix.FindStringIndex(s)
		}
		if loc == nil && strings.Contains(s, "[") {
			loc = replyPrefixBracketed.FindStringIndex(strings.ToLower(s))
		}
		if loc == nil || loc[1] == 0 {
			break
		}
		s = strings.TrimSpace(s[loc[1]:])
	}
	s = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "(fwd)"))
	return strings.Join(strings.Fields(s), " ")
}

// IsForward reports whether the subject starts with a forward prefix.
func IsForward(subject string) bool {
	return forwardPrefix.MatchString(subject)
}

var forwardPrefix = lazyregexp.New(`(?i)^\s*((re|aw|sv|antw)\s*:\s*)*(fw|fwd|tr|trs|wg|i|rv|enc|doorst|vs|vb|fs|pd|转发|転送)\s*:`)
