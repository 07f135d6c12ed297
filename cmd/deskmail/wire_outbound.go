package main

import (
	"fmt"

	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/outbound"
	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
)

// wireOutbound builds the outbox and connects it to the pipeline: every
// change that may cause mail is handed to it inside the change's own
// transaction, so a mail is queued if and only if the change commits.
func wireOutbound(rt *runtime, env *ingest.Env) error {
	ob, err := outbound.New(rt.cfg, rt.signer)
	if err != nil {
		return fmt.Errorf("outbound: %w", err)
	}
	rt.outbox = ob
	env.Prefetch = ob.Prefetch
	env.Notify = func(tx *store.Tx, n ingest.Notice) error {
		// Webhooks hear of every event but the agent-only command_error
		// (once: not of a copy told to another agent), in the same
		// transaction as its mail.
		if n.Event != threading.EventCommandError && !n.Quiet && !n.Copy {
			if err := rt.hooks.Enqueue(tx, string(n.Event), n.Ticket, n.Breach); err != nil {
				return err
			}
		}
		if n.NoMail {
			return nil
		}
		return ob.Enqueue(tx, outbound.Event{
			Kind:           outbound.EventKind(n.Event),
			Ticket:         n.Ticket,
			Conversation:   n.Conversation,
			Channel:        n.Channel,
			InReplyTo:      n.InReplyTo,
			Quiet:          n.Quiet,
			Agent:          n.Agent,
			SuppressReason: n.Suppress,
			ErrorText:      n.ErrorText,
			Recipient:      n.Recipient,
			NotifyAlso:     n.NotifyAlso,
		})
	}
	env.Webhook = func(tx *store.Tx, hook string, n ingest.Notice, rule string) error {
		return rt.hooks.EnqueueFor(tx, hook, string(n.Event), n.Ticket, n.Breach, rule)
	}
	return nil
}
