// Package sla keeps the ticket's clock: the first-response and
// resolution due times of its SLA policy (Freshdesk's fr_due_by and
// due_by), paused while the ticket is in a pending-category status and
// stopped once it is resolved, counted in business hours when the
// policy names a calendar; the escalation of a missed target; and the
// automatic close of a ticket that stayed resolved
// (pipelines[].close_resolved_after).
//
// State lives in the store (table ticket_sla), never only in memory.
// The Tracker is a store.TicketHook: every ticket write, by any path,
// recomputes the ticket's clock in the same transaction, and writes
// next_at, the earliest timer still to fire. The Scheduler is the one
// goroutine that acts on timers: it sleeps until the earliest next_at
// (reading one index entry, at least once a second so that timers
// written by another process fire within a second), then, in one
// transaction per batch, marks each missed target escalated — once:
// the mark, its history entry and the escalation mail commit together
// and a second instance or a restart sees the mark — and closes
// tickets whose close_at passed. A breach that fell due while deskmail
// was stopped fires when it starts.
//
// Time is injected (Clock), so tests advance a fake clock instead of
// sleeping.
package sla
