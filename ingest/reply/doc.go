// Package reply extracts the visible reply from a customer's mail: the
// new text the sender wrote, without the quoted history, forwarded mail,
// signature and "Sent from my phone" trailers their client added.
//
// # Plain text
//
// [TrimText] works on lines, in a few linear passes, and looks only at a
// bounded prefix of each line (maxLine bytes), so a 1 MB body costs a
// few milliseconds and no input can make it backtrack.
//
//  1. Cut. The first history marker outside a ">" quote ends the reply;
//     everything from it on is history:
//     - an Outlook/Exchange header block ("From: … Sent: … To: …
//     Subject:", "De : … Envoyé : … À : … Objet :", "Von: … Gesendet:
//     … An: … Betreff:", "De: … Enviado el: … Para: … Asunto:" and the
//     same in a dozen more languages), recognised as a run of at least
//     two header lines one of which names the sender, with the
//     separator line (underscores or dashes) above it;
//     - a separator such as "-----Original Message-----",
//     "-----Message d'origine-----", "---------- Forwarded message
//     ---------" or "Begin forwarded message:", but only when a header
//     line or a quote follows it, so that a reply which merely
//     discusses such a line on a line of its own is kept;
//     - an attribution line ("On … wrote:", "Le … a écrit :", "Am …
//     schrieb X:", "El … escribió:", "Op … schreef …:", Gmail's
//     verb-less "<date>, Name <addr>:" …), possibly wrapped over three
//     lines, that is NOT followed by a ">" quote.
//  2. Signature. In what is left, the first "-- " line below some reply
//     text starts the signature. The looser "--", "__" and "—" lines
//     count only when at most maxSigLines non-quoted lines follow them.
//  3. Trailing history. From the bottom up, quoted lines, the
//     attribution above them, blank and separator-only lines and mobile
//     trailers ("Sent from my iPhone", "Envoyé de mon iPhone", "Von
//     meinem iPhone gesendet", "Enviado desde mi iPhone", "Get Outlook
//     for iOS" …) are dropped.
//
// Interleaved quotes are kept. A ">" block (with its attribution) that
// has reply text below it stays in the visible reply: an inline answer
// such as "Yes, Tuesday." means nothing to an agent without the
// question it answers, and bottom-posted replies keep their context.
// Only the quote blocks after the last line of reply text are removed.
//
// Never empty. If everything looks like history (a body that is only a
// quote, a mis-detected header on the first line), TrimText returns the
// original text, trimmed, rather than nothing: showing too much is
// recoverable, losing the customer's words is not. Before falling back,
// a body that starts with history markers and has nothing above them (a
// forward with no note, or "On … wrote:" over unquoted text) is trimmed
// again from below the marker, up to maxDepth times, so that a bare
// forward shows the forwarded message's own text.
//
// # HTML
//
// [TrimHTML] parses decoded HTML with golang.org/x/net/html and removes
// the elements mail clients use to mark quoted history: Gmail's
// gmail_quote/gmail_attr, Apple Mail's and Thunderbird's
// blockquote type="cite" (with moz-cite-prefix), Yahoo's yahoo_quoted,
// Zoho's zmail_extra, ProtonMail's protonmail_quote and Outlook's
// divRplyFwdMsg, appendonsend, OLK_SRC_BODY_SECTION and its
// bordered "From:" header block or "<hr>" followed by one. Outlook's
// markers remove everything from the marker to the end of the
// document; quote elements are removed only when no reply text follows
// them, as in the plain-text rule. The caller turns the result into
// text and passes it through TrimText, which removes what is left of
// attribution lines and signatures.
package reply
