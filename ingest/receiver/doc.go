// Package receiver is deskmail's SMTP receiver: company MTAs (Postfix,
// Exim, Exchange connectors, Google/Microsoft routing rules) deliver
// support mail straight to it, and it hands every accepted message to
// the ingest pipeline. It is built on github.com/emersion/go-smtp; this
// package supplies the Backend/Session pair, the connection limits and
// the TLS/AUTH policy.
//
// # Durability
//
// A message is acknowledged with 250 only after Submitter.Submit
// returned nil, which for the ingest pipeline means the raw message
// and its effects are committed (and synced) to the database. Any
// failure to store answers 451 4.3.0 with a generic text, so the
// sending MTA keeps the message and retries; the pipeline is
// idempotent on Message-ID, so the retry cannot create a duplicate.
// deskmail never relays: the only recipients accepted are the
// configured support addresses, their aliases and their plus-addressed
// reply tokens (threading.Addresses).
//
// All recipients of one transaction are delivered as one ingest.Raw
// (one Submit) whose channel is the channel of the first accepted
// recipient. The stored bytes start with a Received: header in the
// form of RFC 5321 §4.4, and the envelope (MAIL FROM, RCPT TO, client
// IP, HELO, TLS, AUTH identity, arrival time) travels in
// ingest.Raw.Envelope.
//
// # Replies
//
//	250 2.0.0     after DATA: the message is committed
//	421 4.7.0     at connect: too many connections (overall or from the
//	              client's address), or the address exceeded its rate
//	421 4.4.2     the session was idle longer than the read timeout,
//	              sent slower than smtp.min_data_rate (bytes a second
//	              over smtp.data_rate_window of waiting for it, in
//	              commands or DATA, trusted relays included), or lasted
//	              longer than the maximum session length (the
//	              connection is then closed); or the server is shutting
//	              down
//	421 4.3.2     MAIL FROM while the server is shutting down
//	421 4.7.0     AUTH: third failed attempt (the session is closed)
//	450 4.7.1     MAIL FROM: the client address or the sender exceeded
//	              smtp.rate_per_minute (token bucket, burst of one minute);
//	              from a trusted relay, the sender exceeded
//	              smtp.relay_sender_rate_per_minute
//	451 4.3.0     after DATA: the message could not be stored (retry)
//	452 4.3.1     DATA: the messages in flight already cost
//	              Options.MaxBufferedBytes of memory (smtp.max_memory):
//	              at once without SIZE, after MemoryWait with it (retry)
//	452 4.5.3     RCPT TO: more than smtp.max_recipients recipients
//	454 4.7.0     AUTH: the user name or the client address is locked
//	              after smtp.auth_lockout_after failures (for
//	              smtp.auth_lockout; the password is not looked at)
//	523 5.7.10    AUTH before STARTTLS (AUTH is offered over TLS only)
//	535 5.7.8     AUTH: wrong user name or password
//	550 5.1.1     RCPT TO: not a support address (no relaying)
//	552 5.3.4     MAIL FROM SIZE= or the data exceed smtp.max_message_bytes
//	554 5.6.0     DATA: an empty message (nothing but blank lines, or
//	              BDAT 0 LAST), a line longer than smtp.max_line_length,
//	              or more header fields than smtp.max_headers (RFC 3463 X.6.0,
//	              "other or undefined media error": the content, not
//	              the size, is refused; 554 is RFC 5321's answer to a
//	              failed DATA transaction)
//
// A line longer than the limit also ends the session (go-smtp cannot
// resynchronise on an overlong line): the client gets the 554 above,
// then 500 5.4.0 and the connection is closed.
//
// # Limits and hostile clients
//
// Memory is bounded: a message is never buffered beyond
// smtp.max_message_bytes, and the messages in flight together cost at
// most Options.MaxBufferedBytes (smtp.max_memory), each counted as
// memoryCost (6) times its raw size — what receiving, parsing and
// storing it really take — until its Submit returns. A message whose
// client announced SIZE waits, holding nothing, until its whole cost
// fits (then its buffer is allocated at once); one without SIZE takes
// its cost as its bytes arrive and gets 452 4.3.1 when they do not
// fit. Waiting sessions hold no part of the budget, so they cannot
// deadlock; a client that announces a SIZE and then stalls is ended by
// the data-rate floor.
//
// Connections are counted overall and per client address (IPv6
// clients per /64) when they are accepted; beyond the limits the
// client gets 421 4.7.0 and the connection is closed before any
// session starts.
//
// Failed AUTH attempts are counted per user name (over every client
// address) and per client address (over every user name; not for
// trusted relays); each failure after the first delays the next answer
// for that key exponentially, and smtp.auth_lockout_after failures lock
// the key for smtp.auth_lockout (authGuard). A correct password from a
// trusted relay lifts a user name's lock.
//
// Trusted relays (smtp.trusted_relays, by default the loopback ranges:
// the MTA in front of deskmail) carry the whole site's mail from one
// address, so they are exempt from the per-address connection and
// rate limits; the overall connection limit and a per-sender limit of
// their own (smtp.relay_sender_rate_per_minute) still apply. The
// Received: header, the envelope and the logs name the real peer. Every read and write has a deadline (the read and
// write timeouts, renewed on each network operation) and no deadline
// goes past the session's maximum length, and a client under the
// data-rate floor is dropped at the end of a window, so slow-loris
// clients cannot hold a connection. Rate limits are token buckets kept in a bounded map with
// lazy refill: no goroutine per key, and the oldest idle buckets are
// dropped when the map is full.
//
// # Tests and benchmark
//
// The tests run the real receiver on 127.0.0.1:0 in front of the real
// pipeline and SQLite store, and talk to it with go-smtp's client, raw
// protocol lines, swaks (skipped when it is not installed) and, in
// TestCrashExactlyOnce, the real `deskmail serve` binary killed with
// SIGKILL while it receives thousands of messages. BenchmarkSMTP
// sends 10 KB messages over 16 concurrent loopback connections:
//
//	go test -run '^$' -bench BenchmarkSMTP -benchtime 5000x ./ingest/receiver/
//
// and reports msg/s, the p50/p99 latency from DATA to 250 and the time
// spent in Submit.
//
// # Shutdown
//
// Serve and ListenAndServe stop when their context ends: the listeners
// close at once, idle sessions are ended with 421, sessions that are
// inside DATA finish (their message is committed and acknowledged)
// and are then closed. Sessions still running after Options.ShutdownGrace
// are cut off; their messages were never acknowledged, so the sender
// retries.
package receiver
