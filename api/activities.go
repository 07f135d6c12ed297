package api

import (
	"net/http"
	"time"

	"github.com/deskmail/deskmail/store"
)

// Activity is one entry of a ticket's history: a status change, an
// assignment, a command applied, a proof failure, a bounce, an SLA
// event… Freshdesk has no v2 endpoint for it (its activities come as a
// daily export); deskmail serves it per ticket, oldest first.
type Activity struct {
	ID             int64   `json:"id"`
	TicketID       int64   `json:"ticket_id"`
	CreatedAt      string  `json:"created_at"`
	ActorType      string  `json:"actor_type"`
	Actor          string  `json:"actor"`
	ConversationID *int64  `json:"conversation_id"`
	Action         string  `json:"action"`
	Field          string  `json:"field"`
	OldValue       *string `json:"old_value"`
	NewValue       *string `json:"new_value"`
	Note           string  `json:"note"`
}

// listActivities serves GET /api/v2/tickets/{id}/activities.
func (s *server) listActivities(w http.ResponseWriter, r *http.Request, a *store.Agent) {
	ticketPage(s, w, r, a, func(tx *store.Tx, id int64) ([]store.History, error) { return tx.TicketHistory(id) },
		func(h *store.History, _ string) Activity {
			return Activity{ID: h.ID, TicketID: h.TicketID, CreatedAt: h.At.UTC().Format(time.RFC3339),
				ActorType: h.ActorType, Actor: h.Actor, ConversationID: h.ConversationID, Action: h.Action,
				Field: h.Field, OldValue: h.OldValue, NewValue: h.NewValue, Note: h.Note}
		})
}
