// Package outbound decides, renders and delivers deskmail's outbound
// mail: confirmations to customers, agent replies, notifications to
// agents, closing mail and command-error mail.
//
// # Two halves
//
// Outbox.Enqueue is called by the ingest pipeline (and any other
// writer of ticket changes) inside the transaction of the change that
// caused the mail. It decides what the event causes, renders each
// mail to its final MIME text and writes it to the store's outbox
// table, recording its Message-ID in the Message-ID index in the same
// transaction. When that transaction commits, the mail is durable;
// when it rolls back, the mail never existed. Enqueue never touches
// the network.
//
// Worker delivers queued mail through the configured relays. It is one
// scheduler goroutine (woken by a timer or by Kick) and, per relay, a
// pool of sender goroutines, each holding one SMTP connection that it
// reuses (RSET) for many messages. A mail goes through the relay of
// the channel whose address is its envelope sender when that channel
// names one (channels[].relay), else through outbound.relay. The
// scheduler claims due mail in a short write transaction that counts
// the attempt and writes the next attempt time (the lease) before any
// sender dials; results are recorded afterwards in another short
// transaction. No transaction is held while talking to the network.
//
// Each attempt's envelope sender (MAIL FROM) is the channel address
// plus the signed bounce token of the outbox row
// (support+b42.<mac>@example.com, threading.Signer.BounceToken) unless
// outbound.verp is off: a delivery status report sent back to it
// proves which mail failed, which is what threading requires before a
// bounce may flag a recipient.
//
// # Delivery semantics
//
//   - In order per ticket: a ticket's mail N+1 is not claimed while
//     mail N is queued (in flight or waiting for a retry).
//   - Temporary unless proven permanent (isPermanent): a 5xx reply to
//     MAIL, RCPT or DATA is permanent (the mail is marked failed and
//     the ticket's history says so); everything else — 4xx,
//     connection and TLS errors, replies while connecting (greeting,
//     EHLO, AUTH), timeouts — is retried with jittered exponential
//     backoff until outbound.max_attempts or outbound.retry_for is
//     reached. While a relay refuses connections, attempts through it
//     fail at once for a few seconds instead of each waiting to time
//     out.
//   - A recipient refused at RCPT as nonexistent (5.1.x, or a bare 550
//     "user unknown", isUnknownRecipient) is flagged bouncing in the
//     transaction that records the attempt, so nothing more is queued
//     to it; the history entry names it.
//   - At least once, and twice only when it cannot be known: a mail is
//     sent again only when the relay may have accepted it without the
//     result being committed (a crash or a dropped connection between
//     the end of DATA and the commit); it is then re-sent after its
//     lease with the same Message-ID and the same bytes, so clients
//     de-duplicate it. At shutdown the results of finished attempts
//     are committed before Run returns.
//
// # DKIM
//
// When outbound.dkim has an entry for the From domain (or a parent of
// it, or else for the envelope sender's domain), Enqueue signs the
// mail (RFC 6376, relaxed/relaxed, the configured header fields) and
// stores the signed text. Signing at enqueue time rather than at
// delivery makes every attempt byte-identical — a re-send after a
// crash carries the same signature and Message-ID — and keeps the
// private key off the delivery path. Suppressed mail is stored
// unsigned (it never leaves).
//
// # Loop prevention (RFC 3834)
//
// Nothing is sent for an import (Event.Quiet). Nothing is sent to the
// requester when the pipeline flagged the triggering mail
// (Event.SuppressReason: auto-reply, bounce, list, loop), to our own
// support addresses, to automated senders (noreply, mailer-daemon,
// postmaster…), or to contacts flagged bouncing; confirmations are
// limited per recipient per hour. Mail held back by these rules is
// written with state "suppressed" and the reason in last_error, so ops
// can see why nothing went out. Automatic mail carries
// "Auto-Submitted: auto-replied" (RFC 3834 §5) and
// "X-Auto-Response-Suppress: All" (Exchange); agent replies are human
// mail and carry neither, so an out-of-office answer to them reaches
// the ticket (where ingest records it without side effects).
//
// # Templates
//
// Each mail is rendered from a text/template (plain text part and the
// subject) and an html/template (HTML part, escaped) named
// <lang>/<name>.txt.tmpl and <lang>/<name>.html.tmpl; English and
// French are built in. Files in outbound.templates_dir override them,
// <channel>/<lang>/<name>… first, then <lang>/<name>…. The data
// available to templates is TemplateData.
package outbound
