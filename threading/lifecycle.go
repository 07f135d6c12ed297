package threading

import (
	"fmt"
	"strconv"
	"time"

	"github.com/deskmail/deskmail/store"
)

// Status categories. Every rule works on categories, so a custom
// status behaves like its category.
const (
	CategoryOpen     = "open"
	CategoryPending  = "pending"
	CategoryResolved = "resolved"
	CategoryClosed   = "closed"
)

// Actor says who or what caused a change; it is written to history.
type Actor struct {
	Type string // mail, agent, admin, api, rule, system
	Name string // an address or a rule name
	// ConversationID links the change to the message that caused it.
	ConversationID *int64
}

// Lifecycle holds the statuses and pipelines and applies status
// changes with their timestamps and history. It is read-only after
// construction and safe for concurrent use.
type Lifecycle struct {
	statuses  map[int]store.Status
	pipelines map[int64]store.Pipeline
	byName    map[string]store.Pipeline
	fallback  store.Pipeline
}

// NewLifecycle builds a Lifecycle from the statuses and pipelines as
// stored (ids filled in).
func NewLifecycle(statuses []store.Status, pipelines []store.Pipeline) *Lifecycle {
	l := &Lifecycle{statuses: map[int]store.Status{}, pipelines: map[int64]store.Pipeline{}, byName: map[string]store.Pipeline{}}
	for _, s := range statuses {
		l.statuses[s.Code] = s
	}
	for _, p := range pipelines {
		l.pipelines[p.ID] = p
		l.byName[p.Name] = p
	}
	agent := 3
	l.fallback = store.Pipeline{Name: "default", NewStatus: 2, CustomerReplyStatus: 2, AgentReplyStatus: &agent, ClosedReply: "new_ticket", Statuses: []int{2, 3, 4, 5}}
	if len(pipelines) > 0 {
		l.fallback = pipelines[0]
	}
	return l
}

// Category returns a status code's category ("" when unknown).
func (l *Lifecycle) Category(code int) string {
	if s, ok := l.statuses[code]; ok {
		return s.Category
	}
	return map[int]string{2: CategoryOpen, 3: CategoryPending, 4: CategoryResolved, 5: CategoryClosed}[code]
}

// Status returns a status by code.
func (l *Lifecycle) Status(code int) (store.Status, bool) {
	s, ok := l.statuses[code]
	return s, ok
}

// Statuses returns every known status.
func (l *Lifecycle) Statuses() []store.Status {
	out := make([]store.Status, 0, len(l.statuses))
	for _, s := range l.statuses {
		out = append(out, s)
	}
	return out
}

// Pipeline returns a ticket's pipeline (the default one when unset).
func (l *Lifecycle) Pipeline(id *int64) store.Pipeline {
	if id != nil {
		if p, ok := l.pipelines[*id]; ok {
			return p
		}
	}
	return l.fallback
}

// PipelineByName returns a pipeline by name.
func (l *Lifecycle) PipelineByName(name string) (store.Pipeline, bool) {
	p, ok := l.byName[name]
	return p, ok
}

// OpenStatus returns the status a customer reply moves a ticket to.
func (l *Lifecycle) OpenStatus(tk *store.Ticket) int {
	return l.Pipeline(tk.PipelineID).CustomerReplyStatus
}

// SetStatus changes a ticket's status (in memory; the caller saves the
// ticket), keeps the stats timestamps and records history. It refuses
// unknown codes. Setting the same status is a no-op.
func (l *Lifecycle) SetStatus(tx *store.Tx, tk *store.Ticket, code int, by Actor, at time.Time) error {
	cat := l.Category(code)
	if cat == "" {
		return fmt.Errorf("unknown status %d", code)
	}
	if tk.Status == code {
		return nil
	}
	old := tk.Status
	tk.Status = code
	tk.StatusUpdatedAt = &at
	switch cat {
	case CategoryResolved:
		tk.ResolvedAt = &at
	case CategoryClosed:
		tk.ClosedAt = &at
		if tk.ResolvedAt == nil {
			tk.ResolvedAt = &at
		}
	}
	if s, ok := l.statuses[code]; ok {
		tk.StatusName, tk.Category = s.Name, s.Category
	}
	return Record(tx, tk.ID, by, "status_changed", "status", strconv.Itoa(old), strconv.Itoa(code), "", at)
}

// Record writes one history entry.
func Record(tx *store.Tx, ticketID int64, by Actor, action, field, oldV, newV, note string, at time.Time) error {
	h := store.History{TicketID: ticketID, At: at, ActorType: by.Type, Actor: by.Name, ConversationID: by.ConversationID,
		Action: action, Field: field, Note: note}
	if field != "" {
		h.OldValue, h.NewValue = &oldV, &newV
	}
	return tx.AddHistory(h)
}

// ClosedReplyPolicy tells what a customer reply to a ticket in the
// closed category does: reopen it, or create a follow-up ticket.
func (l *Lifecycle) ClosedReplyPolicy(tk *store.Ticket, now time.Time) (reopen bool) {
	p := l.Pipeline(tk.PipelineID)
	switch p.ClosedReply {
	case "reopen":
		return true
	case "reopen_within":
		closed := tk.ClosedAt
		if closed == nil {
			closed = tk.StatusUpdatedAt
		}
		return closed != nil && now.Sub(*closed) <= p.ReopenWithin
	default:
		return false
	}
}

// AgentReplyStatus returns the status an agent reply moves a ticket to,
// and false when the pipeline leaves it unchanged.
func (l *Lifecycle) AgentReplyStatus(tk *store.Ticket) (int, bool) {
	p := l.Pipeline(tk.PipelineID)
	if p.AgentReplyStatus == nil {
		return 0, false
	}
	return *p.AgentReplyStatus, true
}
