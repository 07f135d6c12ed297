package reply

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxLine bounds how much of a line any detector looks at. Quote
// headers, header lines, separators and trailers are all short; a
// longer line is reply text (or base64 noise) and is never inspected
// beyond this prefix.
const maxLine = 320

// headerFrom are the keys, lower-cased, that Outlook-style header blocks
// use for the sender, in the languages deskmail sees.
var headerFrom = map[string]bool{
	"from": true, "de": true, "von": true, "da": true, "van": true, "od": true,
	"från": true, "fra": true, "frá": true, "от": true, "від": true, "lähettäjä": true,
	"feladó": true, "afzender": true, "remitente": true, "από": true, "kimden": true,
	"odesílatel": true, "发件人": true, "發件人": true, "寄件者": true, "差出人": true,
	"expéditeur": true, "absender": true, "mittente": true, "nadawca": true,
}

// headerOther are the other keys of such blocks (date, recipients,
// subject), lower-cased.
var headerOther = map[string]bool{
	// English
	"sent": true, "date": true, "to": true, "subject": true, "cc": true, "bcc": true,
	"reply-to": true, "sent by": true,
	// French
	"envoyé": true, "envoye": true, "à": true, "a": true, "objet": true, "cci": true,
	"répondre à": true, "date d'envoi": true, "message du": true, "copie à": true,
	"sujet": true, "copie": true, "envoyé le": true,
	// German
	"gesendet": true, "datum": true, "an": true, "betreff": true, "kopie": true,
	// Spanish, Portuguese
	"enviado": true, "enviado el": true, "enviado em": true, "enviada em": true,
	"enviada": true, "fecha": true, "para": true, "asunto": true, "assunto": true,
	"data": true,
	// Italian
	"inviato": true, "oggetto": true, "inviato il": true,
	// Dutch
	"verzonden": true, "aan": true, "onderwerp": true, "verstuurd": true,
	// Polish
	"wysłano": true, "do": true, "temat": true, "wysłany": true,
	// Nordic
	"skickat": true, "till": true, "ämne": true, "sendt": true, "til": true,
	"emne": true, "dato": true, "lähetetty": true, "vastaanottaja": true,
	"aihe": true, "päivämäärä": true, "kopio": true,
	// Russian, Ukrainian
	"отправлено": true, "дата": true, "кому": true, "тема": true, "копия": true,
	"надіслано": true, "тема листа": true,
	// others
	"elküldve": true, "címzett": true, "tárgy": true, "gönderildi": true,
	"kime": true, "konu": true, "tarih": true, "odesláno": true, "komu": true,
	"předmět": true, "发送时间": true, "發送時間": true, "收件人": true, "主题": true,
	"主旨": true, "日期": true, "日付": true, "宛先": true, "件名": true, "送信日時": true,
	"時間": true, "寄件日期": true,
}

// separatorPhrases are the texts of "-----Original Message-----" and
// forwarded-message separators, lower-cased, decoration removed.
var separatorPhrases = map[string]bool{
	// original message
	"original message": true, "original e-mail": true, "original email": true,
	"message d'origine": true, "message d’origine": true, "message original": true,
	"ursprüngliche nachricht": true, "original-nachricht": true,
	"originalnachricht": true, "mensaje original": true, "messaggio originale": true,
	"oorspronkelijk bericht": true, "origineel bericht": true,
	"wiadomość oryginalna": true, "oryginalna wiadomość": true,
	"ursprungligt meddelande": true, "opprinnelig melding": true,
	"oprindelig meddelelse": true, "oprindelig besked": true, "original meddelelse": true, "alkuperäinen viesti": true,
	"исходное сообщение": true, "оригинальное сообщение": true,
	"mensagem original": true, "původní zpráva": true, "eredeti üzenet": true,
	"原始邮件": true, "原始郵件": true, "元のメッセージ": true, "reply message": true,
	// forwarded
	"forwarded message": true, "begin forwarded message": true,
	"forwarded message follows": true, "forwarded e-mail": true, "forwarded email": true,
	"message transféré": true, "message réexpédié": true,
	"début du message réexpédié": true, "début du message transféré": true,
	"weitergeleitete nachricht": true, "anfang der weitergeleiteten nachricht": true,
	"weitergeleitete e-mail": true, "mensaje reenviado": true,
	"inicio del mensaje reenviado": true, "comienzo del mensaje reenviado": true,
	"messaggio inoltrato": true, "inizio messaggio inoltrato": true,
	"doorgestuurd bericht": true, "begin doorgestuurd bericht": true,
	"mensagem encaminhada": true, "início da mensagem reencaminhada": true,
	"início da mensagem encaminhada": true, "wiadomość przekazana": true,
	"przekazana wiadomość": true, "vidarebefordrat meddelande": true,
	"videresendt melding": true, "videresendt besked": true,
	"videresendt meddelelse": true, "välitetty viesti": true,
	"пересылаемое сообщение": true, "пересланное сообщение": true,
	"转发的邮件": true, "转发邮件": true, "轉寄的郵件": true, "転送されたメッセージ": true,
}

// attributionVerbs end an "On … wrote:" line, lower-cased, without the
// colon.
var attributionVerbs = []string{
	"wrote", "writes", "a écrit", "a ecrit", "schrieb", "hat geschrieben",
	"escribió", "escribio", "ha escrito", "ha scritto", "scrisse", "escreveu",
	"schreef", "geschreven", "napisał", "napisała", "napisał(a)", "napisal",
	"napisala", "pisze", "skrev", "пише", "писал", "написал(а) следующее", "skrev følgende", "kirjoitti", "написал", "написала",
	"написал(а)", "написав", "написала(а)", "написав(ла)", "пишет", "írta",
	"έγραψε", "yazdı", "napsal", "napísal", "a scris", "写道", "寫道",
	"のメッセージ", "wrote the following",
}

// spacedVerbs are attributionVerbs with a space on each side, for
// finding a verb inside a line.
var spacedVerbs = func() []string {
	out := make([]string, len(attributionVerbs))
	for i, v := range attributionVerbs {
		out[i] = " " + v + " "
	}
	return out
}()

// trailerPrefixes start mobile and webmail trailers ("Sent from my
// iPhone"), lower-cased. The rest of the line must be short; see
// isTrailer.
var trailerPrefixes = []string{
	"sent from my ", "sent from ", "sent via ", "sent with ", "sent using ",
	"sent on the go", "sent by ", "from my ",
	"envoyé de mon ", "envoyé depuis mon ", "envoyé à partir de ", "envoyé avec ",
	"envoye de mon ", "envoyé de ", "envoyé depuis ",
	"von meinem ", "gesendet von meinem ", "gesendet mit ", "gesendet von ",
	"diese nachricht wurde von meinem ",
	"enviado desde mi ", "enviado desde ", "enviado con ", "enviado do meu ",
	"enviado de meu ", "enviado de mi ", "enviado a partir do ",
	"inviato da ", "inviato dal mio ", "inviato con ",
	"verzonden vanaf mijn ", "verzonden met ", "verstuurd vanaf mijn ", "verstuurd met ",
	"wysłane z ", "wysłano z ", "skickat från min ", "skickat från ", "sendt fra min ",
	"sendt fra ", "lähetetty ", "отправлено с ", "отправлено из ",
	"get outlook for ", "download outlook for ", "obtenir outlook pour ",
	"obtener outlook para ", "outlook für ", "holen sie sich outlook für ",
	"scarica outlook per ", "obter o outlook para ",
	"從我的 ", "从我的", "发自我的", "iphoneから送信",
}

// trailerFirstBytes marks the first bytes of trailerPrefixes.
var trailerFirstBytes = func() (set [256]bool) {
	for _, p := range trailerPrefixes {
		set[p[0]] = true
	}
	return set
}()

// lowerASCII lower-cases an ASCII letter.
func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// trailerDevices name the device or mail app in a trailer; a "Sent
// from …" line without one is a sentence ("Sent from my desk, …").
var trailerDevices = []string{
	"iphone", "ipad", "ipod", "android", "mobil", "móvil", "movil", "phone", "téléphone",
	"telefon", "teléfono", "telefone", "telemóvel", "cellulare", "cell", "celular",
	"samsung", "galaxy", "blackberry", "device", "appareil", "gerät", "handy", "htc",
	"nokia", "huawei", "pixel", "xiaomi", "oneplus", "motorola", "tablet", "tablette",
	"outlook", "mail", "yahoo", "aol", "airmail", "mailbox", "sparrow", "spark",
	"superhuman", "windows", "ti-85", "alcatel", "k-9", "telefoon", "mobiel",
	"komórk", "смартфон", "телефон", "iPhone", "mac", "watch", "surface", "proton",
}

// trailerExcuses may follow the device in a trailer ("…, please excuse
// typos").
var trailerExcuses = []string{
	"excuse", "typo", "brevity", "pardon", "désolé", "entschuldig", "disculp",
	"kurz", "tippfehler", "faute", "scusa",
}

// line helpers

// bounded returns the first maxLine bytes of s, cut at a rune boundary.
func bounded(s string) string {
	if len(s) <= maxLine {
		return s
	}
	i := maxLine
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// isBlank reports whether a line has no visible text. Zero-width
// characters and the tracking dot some clients append count as blank.
// It stops at the first visible rune, so its cost is the line's
// leading white space.
func isBlank(s string) bool {
	for _, r := range s {
		switch r {
		case '\u200b', '\u200c', '\u200d', '\u2060', '\ufeff', '\u1427', '\u00a0':
			continue
		}
		if !unicode.IsSpace(r) {
			return false
		}
	}
	return true
}

// isQuoted reports whether a line is part of a quote: "> text", the
// Supercite style "Name> text" and the "| text" some clients use (but
// not a Markdown table row, which ends with "|").
func isQuoted(s string) bool {
	i := 0
	for i < len(s) && i < 8 && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	if i >= len(s) {
		return false
	}
	switch c := s[i]; {
	case c == '>':
		return true
	case c == '|':
		if i+1 == len(s) {
			return true
		}
		t := strings.TrimRight(s, " \t")
		return (s[i+1] == ' ' || s[i+1] == '|') && !strings.HasSuffix(t, "|") || t == "|"
	case c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z':
		// Supercite: up to ten ASCII letters, then ">".
		j := i
		for j < len(s) && j-i <= 10 && (s[j] >= 'A' && s[j] <= 'Z' || s[j] >= 'a' && s[j] <= 'z') {
			j++
		}
		return j < len(s) && j-i <= 10 && s[j] == '>' && (j+1 == len(s) || s[j+1] == ' ' || s[j+1] == '>')
	}
	return false
}

// isSeparatorOnly reports whether a non-blank line is made only of
// rule characters (dashes, underscores, equals signs, stars…).
func isSeparatorOnly(s string) bool {
	if len(s) > maxLine {
		return false
	}
	n := 0
	for _, r := range s {
		switch r {
		case '-', '_', '=', '*', '~', '#', '+', '.', '·', '•', '‐', '‒', '–', '—', '―', '─', '━', '\u1427':
			n++
		case ' ', '\t', '\u00a0', '\u200b', '\ufeff':
		default:
			return false
		}
	}
	return n > 0
}

// sigKind classifies a signature delimiter line.
type sigKind int

const (
	sigNone   sigKind = iota
	sigStrict         // "-- " as RFC 3676 section 4.3 defines it
	sigLoose          // "--", "__", "—", "–": a signature only when short
)

func sigDelimiter(s string) sigKind {
	if s == "-- " || s == "--\u00a0" {
		return sigStrict
	}
	t := strings.TrimSpace(s)
	switch t {
	case "--", "—", "–", "---":
		if t == "---" {
			return sigNone // Markdown rule, common inside text
		}
		return sigLoose
	}
	if len(t) >= 2 && len(t) <= 80 && strings.Trim(t, "_") == "" {
		return sigLoose
	}
	return sigNone
}

// nameSignature reports whether a line is a "-Name" sign-off such as
// "-Abhishek Kona": a dash glued to one to four capitalised words.
func nameSignature(s string) bool {
	t := strings.TrimSpace(bounded(s))
	if len(t) < 3 || len(t) > 48 || t[0] != '-' {
		return false
	}
	t = t[1:]
	r, _ := utf8.DecodeRuneInString(t)
	if !unicode.IsUpper(r) {
		return false
	}
	f := strings.Fields(t)
	if len(f) > 4 {
		return false
	}
	for _, w := range f {
		r, _ := utf8.DecodeRuneInString(w)
		if !unicode.IsUpper(r) && !strings.HasSuffix(w, ".") {
			return false
		}
	}
	return true
}

// headerKey splits a "Key: value" line and returns the lower-cased key
// and the value. Outlook's Markdown-ish "*From:* x" and French "De : x"
// are accepted. ok is false when the line has no key.
func headerKey(s string) (key, value string, ok bool) {
	s = strings.TrimLeft(bounded(s), " \t\u00a0")
	limit := len(s)
	if limit > 48 {
		limit = 48
	}
	i := strings.IndexByte(s[:limit], ':')
	w := 1
	if j := strings.Index(s[:limit], "："); j >= 0 && (i < 0 || j < i) {
		i, w = j, len("：")
	}
	if i <= 0 {
		return "", "", false
	}
	key = strings.Trim(s[:i], "*_ \t\u00a0")
	if key == "" || strings.ContainsAny(key, "<>@/\\\"()[]") {
		return "", "", false
	}
	key = strings.ToLower(key)
	value = strings.Trim(s[i+w:], "*_ \t\u00a0")
	return key, value, true
}

// headerClass returns 2 for a sender key, 1 for another header key and
// 0 for anything else.
func headerClass(s string) int {
	key, _, ok := headerKey(s)
	if !ok {
		return 0
	}
	if headerFrom[key] {
		return 2
	}
	if headerOther[key] {
		return 1
	}
	return 0
}

// separatorPhrase reports whether s is an "-----Original Message-----"
// or forwarded-message separator line, and whether it is decorated with
// rule characters (rather than only ending with a colon).
func separatorPhrase(s string) (sep, decorated bool) {
	t := strings.TrimSpace(bounded(s))
	if len(t) < 4 || len(t) > 120 {
		return false, false
	}
	inner := strings.TrimLeftFunc(t, func(r rune) bool {
		if r == '-' || r == '_' || r == '=' || r == '*' || r == '~' || r == '–' || r == '—' {
			decorated = true
			return true
		}
		return r == ' ' || r == '\t'
	})
	colon := false
	inner = strings.TrimRightFunc(inner, func(r rune) bool {
		switch r {
		case '-', '_', '=', '*', '~', '–', '—':
			decorated = true
			return true
		case ':', '：':
			colon = true
			return true
		}
		return r == ' ' || r == '\t' || r == '\u00a0'
	})
	if !decorated && !colon {
		return false, false
	}
	p := strings.ToLower(strings.Join(strings.Fields(inner), " "))
	return separatorPhrases[p], decorated
}

// hasDigit reports whether s contains an ASCII digit.
func hasDigit(s string) bool {
	// A byte loop: strings.ContainsAny builds its byte set on every
	// call and was three times slower on a typical line.
	for i := 0; i < len(s); i++ {
		if isDigit(s[i]) {
			return true
		}
	}
	return false
}

// attributionEnd reports whether s, the lower-cased text of one to
// three joined lines, is a quote attribution such as "On … wrote:".
// loose accepts a verb without a date ("Bob wrote:"), used only right
// above a ">" quote.
func attributionEnd(s string, loose bool) bool {
	t := strings.TrimSpace(s)
	if len(t) < 6 || len(t) > 3*maxLine {
		return false
	}
	// Zoho's "---- On Mon, 1 Jan 2024 Bob <b@x> wrote ----".
	if strings.HasPrefix(t, "---") && strings.HasSuffix(t, "---") {
		t = strings.Trim(t, "- ")
	}
	colon := false
	if strings.HasSuffix(t, ":") {
		t, colon = strings.TrimSpace(t[:len(t)-1]), true
	} else if strings.HasSuffix(t, "：") {
		t, colon = strings.TrimSpace(t[:len(t)-len("：")]), true
	}
	if len(t) == 0 {
		return false
	}
	dated := hasDigit(t)
	for _, v := range attributionVerbs {
		if strings.HasSuffix(t, v) {
			before := t[:len(t)-len(v)]
			if before != "" {
				r, _ := utf8.DecodeLastRuneInString(before)
				if unicode.IsLetter(r) && !strings.HasPrefix(v, "の") {
					continue // "rewrote", "overwrote"
				}
			}
			if dated || loose || strings.Contains(t, "@") {
				return true
			}
		}
	}
	// "Op 12 dec. 2016 19:05 schreef X <x@y>:", "Max <m@x> schrieb am
	// Fr., 28. Apr. 2017 um 11:53 Uhr:": the verb is followed by the
	// name, or by the date.
	if colon && dated {
		for _, v := range spacedVerbs {
			if k := strings.Index(t, v); k >= 0 {
				rest := t[k+len(v):]
				if strings.Contains(t, "@") || len(strings.Fields(rest)) <= 8 {
					return true
				}
			}
		}
	}
	if gmailISODate(t) {
		return true
	}
	// Gmail's verb-less header in some locales:
	// "ср, 30 апр. 2025 г. в 15:19, John Doe <doe@example.com>:".
	t = strings.ReplaceAll(strings.ReplaceAll(t, "< ", "<"), " >", ">")
	if colon && dated && strings.HasSuffix(t, ">") && strings.Contains(t, "@") {
		if lt := strings.LastIndexByte(t, '<'); lt >= 0 && strings.Contains(t[lt:], "@") && !strings.ContainsAny(t[lt+1:len(t)-1], " \t") {
			return hasTime(t[:lt])
		}
	}
	return false
}

// gmailISODate reports whether s starts like Gmail's old attribution
// "2016-03-03 17:21 GMT+01:00 Some One <x@y>:" or "2013/7/20 Sam <s@x>".
func gmailISODate(s string) bool {
	if len(s) < 12 || !isDigit(s[0]) || !isDigit(s[1]) || !isDigit(s[2]) || !isDigit(s[3]) || (s[4] != '-' && s[4] != '/') {
		return false
	}
	i := 5
	for i < len(s) && i < 12 && (isDigit(s[i]) || s[i] == '-' || s[i] == '/') {
		i++
	}
	if i >= len(s) || s[i] != ' ' || len(s) > 2*maxLine {
		return false
	}
	rest := s[i:]
	return strings.Contains(rest, " gmt") || strings.Contains(rest, "@") || strings.HasSuffix(rest, ":")
}

// endsLikeAttribution is a cheap test run before attributionEnd: an
// attribution ends with a colon, or is Zoho's dashed form, or starts
// with Gmail's ISO date.
func endsLikeAttribution(s string) bool {
	t := strings.TrimRight(s, " \t\u00a0")
	if t == "" {
		return false
	}
	switch t[len(t)-1] {
	case ':', '-':
		return true
	}
	if strings.HasSuffix(t, "：") || len(t) > 4 && isDigit(t[0]) && isDigit(t[3]) && (t[4] == '-' || t[4] == '/') {
		return true
	}
	// "On Wed, 14 Nov 2018 08:14:43 -0200 John <j@x> wrote", no colon.
	if !hasDigit(t) {
		return false
	}
	tail := t
	if len(tail) > 32 {
		tail = strings.ToValidUTF8(tail[len(tail)-32:], "")
	}
	tail = strings.ToLower(tail)
	for _, v := range attributionVerbs {
		if strings.HasSuffix(tail, v) {
			return true
		}
	}
	return false
}

// hasTime reports whether s holds something like "15:19", "3.45" or a
// four-digit year.
func hasTime(s string) bool {
	digits := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '0' && c <= '9' {
			digits++
			if digits == 4 {
				return true
			}
			continue
		}
		if (c == ':' || c == '.') && digits > 0 && i+2 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) {
			return true
		}
		digits = 0
	}
	return false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isTrailer reports whether a line is a mobile or webmail trailer such
// as "Sent from my iPhone" or "Get Outlook for Android".
func isTrailer(s string) bool {
	t := strings.TrimSpace(bounded(s))
	if len(t) < 6 || len(t) > 160 {
		return false
	}
	t = strings.Trim(t, "()<>[]*_ ")
	if !trailerStart(t) {
		return false
	}
	t = dropLinks(strings.ToLower(t))
	for _, p := range trailerPrefixes {
		if !strings.HasPrefix(t, p) && strings.TrimSpace(t) != strings.TrimSpace(p) {
			continue
		}
		rest := strings.TrimSpace(t[min(len(p), len(t)):])
		clause, tail := rest, ""
		if i := strings.IndexAny(rest, ",.;!"); i >= 0 {
			clause, tail = rest[:i], strings.TrimSpace(rest[i+1:])
		}
		words := len(strings.Fields(clause))
		if words > 6 {
			return false
		}
		// "Sent from my Wiko Ridge 4G": a short possessive names a
		// device even when we do not know it.
		if strings.HasPrefix(p, "von meinem") && !strings.Contains(t, "gesendet") {
			return false
		}
		mine := strings.HasPrefix(p, "sent from my") || strings.HasPrefix(p, "envoyé de mon") ||
			strings.HasPrefix(p, "envoyé depuis mon") || strings.HasPrefix(p, "enviado desde mi") ||
			strings.HasPrefix(p, "enviado do meu") || strings.HasPrefix(p, "von meinem")
		if !containsAny(clause+" "+p, trailerDevices) && !(mine && words <= 4 && tail == "") {
			return false
		}
		if tail == "" || len(strings.Fields(tail)) <= 1 {
			return true
		}
		for _, e := range trailerExcuses {
			if strings.Contains(tail, e) {
				return len(strings.Fields(tail)) <= 10
			}
		}
		return false
	}
	return false
}

// trailerStart is a cheap test run before the full trailer match: the
// lower-cased start of the line begins one of trailerPrefixes.
func trailerStart(t string) bool {
	if t != "" && t[0] < utf8.RuneSelf && !trailerFirstBytes[lowerASCII(t[0])] {
		// The lower-cased line starts with this byte, and no prefix
		// does (most lines: this skips lower-casing them).
		return false
	}
	head := t
	if len(head) > 48 {
		head = strings.ToValidUTF8(head[:48], "") // may cut a rune
	}
	head = strings.ToLower(head)
	for _, p := range trailerPrefixes {
		if strings.HasPrefix(head, p) || len(head) < len(p) && strings.HasPrefix(p, head) {
			return true
		}
	}
	return false
}

func containsAny(s string, words []string) bool {
	for _, w := range words {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

// dropLinks removes "<…>" and "(…)" groups and Markdown link targets
// from a short line, keeping link text.
func dropLinks(s string) string {
	var b strings.Builder
	depth := 0
	for _, r := range s {
		switch r {
		case '<', '(':
			depth++
			continue
		case '>', ')':
			if depth > 0 {
				depth--
			}
			continue
		case '[', ']':
			continue
		}
		if depth == 0 {
			b.WriteRune(r)
		}
	}
	return strings.Join(strings.Fields(b.String()), " ")
}
