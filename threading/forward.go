package threading

import (
	"net/mail"
	"strings"

	"github.com/deskmail/deskmail/internal/lazyregexp"
)

// forwardMarker starts the forwarded part of a mail in the clients and
// languages we see: Gmail, Outlook, Apple Mail, Thunderbird.
var forwardMarker = lazyregexp.New(`(?im)^[ \t>]*(-{2,}\s*(forwarded message|original message|message transféré|message d'origine|ursprüngliche nachricht|weitergeleitete nachricht|mensaje reenviado|mensaje original|doorgestuurd bericht|oorspronkelijk bericht|messaggio inoltrato|messaggio originale)\s*-{2,}|begin forwarded message:|début du message réexpédié\s*:|anfang der weitergeleiteten nachricht:|inicio del mensaje reenviado:)`)

// fromLine is the "From:" line of a forwarded header block.
var fromLine = lazyregexp.New(`(?im)^[ \t>*]*(from|de|von|van|da|od|från|fra)\s*:\s*\**(.+)$`)

// ForwardedSender finds the original sender in the text of a forwarded
// mail: the first From line after a forward marker. ok is false when
// the forward does not make the sender clear.
func ForwardedSender(text string) (Person, bool) {
	loc := forwardMarker.FindStringIndex(text)
	if loc == nil {
		return Person{}, false
	}
	rest := text[loc[1]:]
	if len(rest) > 4000 {
		rest = rest[:4000]
	}
	m := fromLine.FindStringSubmatch(rest)
	if m == nil {
		return Person{}, false
	}
	return parsePerson(strings.TrimSpace(strings.Trim(m[2], "* ")))
}

// mailtoLink matches the "Name [mailto:x@y]" form Outlook writes.
var mailtoLink = lazyregexp.New(`^(.*?)\s*\[mailto:([^\]\s]+)\]`)

var bareAddr = lazyregexp.New(`[A-Za-z0-9._%+\-']+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}`)

func parsePerson(s string) (Person, bool) {
	if m := mailtoLink.FindStringSubmatch(s); m != nil {
		return Person{Name: strings.Trim(m[1], `" `), Email: strings.ToLower(m[2])}, true
	}
	if a, err := mail.ParseAddress(s); err == nil {
		return Person{Name: a.Name, Email: strings.ToLower(a.Address)}, true
	}
	if addr := bareAddr.FindString(s); addr != "" {
		name := strings.TrimSpace(strings.Trim(strings.Replace(s, addr, "", 1), `"<>() `))
		return Person{Name: name, Email: strings.ToLower(addr)}, true
	}
	return Person{}, false
}
