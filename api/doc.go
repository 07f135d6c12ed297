// Package api is deskmail's HTTP API, shaped like Freshdesk's API v2 so
// that a script written for Freshdesk needs only its base URL and key
// changed: the same paths (/api/v2/tickets, …/conversations, …/reply,
// …/notes, /api/v2/contacts, /api/v2/search/tickets,
// /api/v2/search/contacts, /api/v2/ticket_fields), field names,
// status codes (2 Open, 3 Pending, 4 Resolved, 5 Closed, custom ≥ 6),
// pagination (page, per_page ≤ 100, a Link header with rel="next"),
// rate-limit headers and error bodies. openapi.yaml beside this file
// describes every route; a test keeps the two in sync.
//
// # Changes go through the pipeline
//
// Every write is one store transaction made by ingest.Pipeline with
// the threading engine: a status set through the API follows the same
// lifecycle rules and writes the same history as one set by mail, and
// an API reply is queued in the outbox in the transaction that stores
// it, threaded (In-Reply-To/References) to the customer's mail.
//
// # Authentication and roles
//
// Each agent has API keys (`deskmail agents key EMAIL`), stored as
// SHA-256 hashes. A request authenticates with HTTP Basic, the key as
// user name and any password ("KEY:X", as Freshdesk does), or with
// "Authorization: Bearer KEY". A missing or wrong key gives 401 with
// Freshdesk's body. Agents read and change tickets, reply, add and edit
// notes; deleting tickets and conversations needs the admin role (403
// otherwise). Channel scoping: an agent whose configuration names a
// group sees only tickets of channels of that group and of channels
// without a group (Options.AgentChannels, built by ScopesFromConfig);
// agents without a group, and admins, see every channel. A ticket out
// of scope answers 403.
//
// # Search
//
// GET /api/v2/search/tickets?query="…" and /api/v2/search/contacts
// take Freshdesk's query language, parsed by package search (a
// recursive-descent parser: AND, OR, parentheses, ":" for equal, ":>"
// and ":<" for greater or less than or equal on numbers and dates,
// 'quoted' strings, null) and compiled by the store to SQL in which
// every value is a bound parameter. Ticket fields: status, priority,
// agent_id, group_id, type, tag, created_at, updated_at, due_by,
// fr_due_by and the configured custom fields (by name or cf_name);
// contact fields: email, name, language, created_at, updated_at. The
// answer is {"results": […], "total": N}, 30 results a page, pages 1
// to 10 (page 11 is a 400, as in Freshdesk). A malformed query is a 400
// with Freshdesk's body whose error names the field (or "query") and
// what is wrong, with its position. A ticket search honours the key's
// channel scope, like every ticket endpoint; deleted tickets are never
// found.
//
// # Where deskmail differs from Freshdesk
//
// GET /api/v2/tickets follows Freshdesk's defaults: newest first, only
// the tickets created in the past 30 days unless updated_since is
// given, deleted ones only with filter=deleted. Of the predefined
// filters, new_and_my_open is the open-category tickets unassigned or
// assigned to the caller; watching and spam are always empty (deskmail
// has no watchers and never marks a ticket as spam), and company_id
// matches nothing (there are no companies). It also filters on status,
// priority and channel, and orders by priority too. The view's
// include=conversations returns all conversations, not the first ten.
// group_id numbers the groups named in the configuration in sorted
// order (group_name gives the name itself). DELETE moves a ticket to
// the trash (deleted: true; PUT …/restore brings it back). Ticket
// creation with source 10 mails the description to the requester as
// the agent's first reply (Freshdesk's outbound email); other sources
// store it as the requester's message and send the confirmation.
// A note tells the assigned agent and, in addition, each agent its
// notify_emails names (listed back as notified_to); notify_emails must
// name active agents. bcc_emails is not supported and must be empty. custom_fields are the ones declared in the configuration
// (custom_fields:), listed by ticket_fields; a null value clears one.
// Contacts are not scoped by channel. POST /api/v2/contacts needs name
// and email (Freshdesk accepts a phone or other handle instead of the
// email; deskmail's contacts are addresses); a duplicate address is
// Freshdesk's 409 duplicate_value body, and so is an agent's address.
// time_zone takes IANA names (Europe/Paris), not Freshdesk's Rails
// names. Contacts have no mobile, twitter_id, company, address,
// avatar, other_emails or custom fields (refused as invalid_field, or
// null/empty in answers). DELETE soft-deletes (deleted: true, out of
// lists and search, state=deleted lists them; PUT …/restore); a new
// ticket a deleted contact's mail opens goes to the trash and mails
// nobody, where Freshdesk sends such mail to spam (its replies to
// tickets it already has thread as usual); the hard delete
// (DELETE …/hard_delete) and make_agent are not supported.
// Search differs in small ways:
// results are found at once (Freshdesk indexes with a delay of minutes);
// a date compares by day, so created_at:<'2026-03-02' includes that
// day; string values match whole, without regard to case; a backslash
// escapes a quote inside a string; and search results are newest
// first. GET /api/v2/tickets/{id}/activities
// (an extension) serves the ticket's history, which Freshdesk exposes
// only as a daily activities export.
//
// Notes tell the assigned agent and the agents notify_emails names
// (notified_to). Tickets: company_id and product_id are always null
// (no companies, no products), spam is always false, and the
// /tickets/outbound_email endpoint is not supported (create with source
// 10). Authentication also accepts a Bearer token. A write while the
// database cannot take writes is 503.
//
// Not supported: companies, agents other than /agents/me, groups,
// roles, skills, products, email configs and mailboxes, business hours
// and SLA policies (configured in the YAML file), canned responses, the
// knowledge base (solutions), discussions, surveys and satisfaction
// ratings, time entries, automations, ticket forms, contact and company
// fields, creating or changing ticket fields (GET only), ticket
// watchers, merging, bulk update and bulk delete, forwarding a ticket
// through the API, archived tickets, and jobs. openapi.yaml's
// description lists these differences too (a test checks that both
// name them).
//
// # Limits
//
// Requests are counted per key — not per account and plan as Freshdesk
// does — in fixed one-minute windows (default 200 per minute, per role
// in Options.RoleRateLimits) and answered with
// X-RateLimit-Total, X-RateLimit-Remaining and
// X-RateLimit-Used-CurrentRequest; over the limit, 429 with
// Retry-After. Failed logins are limited per client address: one with
// 30 failed logins in a minute gets
// 429 for the rest of that minute, whatever key it sends, so keys cannot
// be guessed at speed. Failures are also counted per key prefix (the
// first 8 characters of the presented key; see AuthGuard): after 3, each
// failure with that prefix is answered after a doubling delay (100 ms
// up to 5 s), and the 10th locks the prefix for 15 minutes (429 at once
// for a wrong key with it, from any address). A valid key is always
// accepted — checked before any lock — so nobody can lock an agent out
// by guessing at her key. Keys are 32 random bytes: the limits slow and
// log guessing, the key's length makes it hopeless. The web console's
// password sign-ins count in the same AuthGuard (SignInFailed): the
// address's failures are shared, and an account is locked like a key
// prefix — but a locked account refuses even the right password. Behind a reverse proxy listed in
// Options.TrustedProxies the client address is the rightmost
// X-Forwarded-For hop that is not a trusted proxy; from any other peer
// X-Forwarded-For is ignored. JSON bodies are limited to MaxJSONBytes and multipart
// bodies (attachments) to MaxMultipartBytes. While the database cannot
// take writes (disk full, read-only, locked: store.IsUnavailable), a
// request that writes gets 503 with Freshdesk's error body and
// Retry-After, not 500. Unknown fields are
// refused. Handlers never panic on input; a panic is recovered, logged
// and answered with a JSON 500.
package api
