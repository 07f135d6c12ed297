// Package console is deskmail's web console: server-rendered pages
// for agents (the ticket queue, a ticket's conversation, reply, note,
// status/priority/assignee changes) and for admins (the ops dashboard:
// channels, the outbox, mail kept raw after a failure, bouncing
// contacts, SLA breaches). `deskmail serve` mounts it at the root of
// http.listen, beside /api/.
//
// # No second copy of the rules
//
// Every read and change goes through the code the HTTP API uses: the
// store's queries, ingest.Pipeline (Reply, AddNote, UpdateFromAPI: one
// transaction each, through the threading engine's lifecycle rules and
// history, a reply queued in the outbox threaded to the customer's
// mail), api.Scopes (an agent sees only the tickets of their
// channels; the API's rule) and api.AuthGuard (failed sign-ins are
// limited with API keys' failures, per client address as
// http.trusted_proxies defines it). The ops dashboard shows the report
// `deskmail status` prints (opsreport.Gather), so the two cannot
// disagree.
//
// # Sign-in and sessions
//
// Agents sign in with their address and the password set by
// `deskmail agents password EMAIL` (an argon2id hash, see
// HashPassword). A session is a random 32-byte token in a cookie
// (HttpOnly, SameSite=Strict, Secure when the request came over TLS or
// http.public_url is https); the store keeps only its SHA-256, the
// agent and a per-session CSRF token. Signing in always makes a new
// session (a token planted before sign-in is never adopted), signing
// out deletes it, a session unused for Options.SessionTimeout ends,
// and a deactivated agent's sessions end at once (deleted, and every
// lookup requires an active agent). A changed password ends the
// agent's other sessions.
//
// # Requests
//
// Every POST carries the session's CSRF token in a form field (the
// sign-in form a double-submit token), compared in constant time;
// without it the request is refused with 403 before anything runs.
// Every response carries a strict Content-Security-Policy (default-src
// 'self', no inline script or style, img-src 'self' so that remote
// images in mail never load by themselves), X-Frame-Options: DENY,
// Referrer-Policy: same-origin and X-Content-Type-Options: nosniff.
// Customer HTML is sanitized again with the ingest policy when it is
// shown, remote images become links the agent may click, and quoted
// history is folded in <details>. Attachments and raw messages are
// downloads (Content-Disposition: attachment, nosniff, a sandbox CSP).
//
// Pages are html/template, the one stylesheet and the small script
// (progressive enhancement only: everything works without
// JavaScript) are embedded in the binary; nothing is loaded from
// elsewhere. The console speaks English and French, following the
// agent's choice (stored with the agent), else the browser's
// Accept-Language.
package console
