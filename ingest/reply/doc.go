// Package reply extracts the visible reply from a customer's mail: the
// new text the sender wrote, without the quoted history, forwarded mail,
// signature and "Sent from my phone" trailers their client added.
//
// # Plain text
//
// [TrimText] works on lines, in a few linear passes, and looks only at a
// bounded prefix of each line (maxLine bytes), so a 1 MB body costs
// well under 100 ms and no input can make it backtrack.
//
//  1. Cut. The first history marker outside a quote ends the reply;
//     everything from it on is history. The markers are: an
//     Outlook/Exchange header block ("From: … Sent: … To: … Subject:",
//     "De : … Envoyé : … À : … Objet :", "Von: … Gesendet: … An: …
//     Betreff:", "De: … Enviado el: … Para: … Asunto:" and the same in a
//     dozen more languages), that is a run of at least two header lines
//     one of which names the sender, together with the rule line
//     (underscores or dashes) above it; a separator such as
//     "-----Original Message-----", "-----Message d'origine-----",
//     "---------- Forwarded message ---------" or "Begin forwarded
//     message:" (a dashed separator counts unless the line above ends
//     with a colon and no header follows, which is a reply discussing
//     the separator; an undashed one needs a header below it); an
//     attribution ("On … wrote:", "Le … a écrit :", "Am … schrieb X:",
//     "El … escribió:", "Op … schreef …:", Gmail's verb-less "<date>,
//     Name <addr>:" …), possibly wrapped over three lines, that is not
//     followed by a quote (an attribution needs a digit, its date, or
//     an address, so "On Monday we…" and "Here is what Bob wrote:" stay
//     text); and a mobile trailer ("Sent from my iPhone") below reply
//     text, since mobile clients put it between the reply and history
//     they often leave unmarked.
//  2. Signature. In what is left, the first "-- " line below some reply
//     text starts the signature. The looser "--", "__" and "—" lines
//     count only when at most maxSigLines non-quoted lines follow them,
//     and a "-Name" sign-off only at the very end.
//     With the sender known ([TrimTextFrom]), a block at the bottom
//     that starts with a line naming them ("Gina", "John E. Doe,
//     Ph.D.": capitalised words, one a word of the From display name or
//     of the address's local part, role words such as "Support"
//     excluded) is a signature too, with at most 8 short lines below
//     it, when a blank line, a valediction ("Thank you,", which goes
//     with it) or a rule line a few lines above sets it off, and the
//     line above does not end in a colon ("Please ship to:" over an
//     address keeps the address).
//  3. Trailing history. From the bottom up, quoted lines, the
//     attribution above them, blank and separator-only lines and mobile
//     trailers ("Sent from my iPhone", "Envoyé de mon iPhone", "Von
//     meinem iPhone gesendet", "Enviado desde mi iPhone", "Get Outlook
//     for iOS" …) are dropped.
//
// Quoted lines are "> text", Supercite's "Name> text" and "| text"
// (not a Markdown table row). A line that a client re-wrapped without
// its ">" (lower-case start, between two quoted lines, below a long
// line cut mid-sentence) counts as quoted too.
//
// Interleaved quotes are kept. A ">" block (with its attribution) that
// has reply text below it stays in the visible reply: an inline answer
// such as "Yes, Tuesday." means nothing to an agent without the
// question it answers, and bottom-posted replies keep their context.
// Only the quote blocks after the last line of reply text are removed,
// and an attributed quote at the very top of a bottom-posted reply
// (attribution, quote, reply text, no further quote). A bare ">" quote
// at the top is kept: it may be a quotation the writer typed.
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
