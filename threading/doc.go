// Package threading decides which ticket a message belongs to and what
// that does to the ticket: the matching rules of DESIGN.md (duplicate,
// In-Reply-To/References, signed reply-address token, subject token for
// participants, new ticket), the ticket lifecycle (pipelines, status
// categories, reopen and follow-up rules, stats timestamps) and the
// signed tokens deskmail puts in reply addresses.
//
// It works inside one store transaction handed to it by the ingest
// pipeline, so a message's effects commit together or not at all.
package threading
