package api

import (
	"net/http"
	"strconv"

	"github.com/deskmail/deskmail/store"
)

// TicketField is one entry of GET /api/v2/ticket_fields, in
// Freshdesk's shape. The status field also lists deskmail's statuses
// with their categories and the pipelines.
type TicketField struct {
	ID                 int64    `json:"id"`
	Name               string   `json:"name"`
	Label              string   `json:"label"`
	Description        string   `json:"description"`
	Position           int      `json:"position"`
	RequiredForClosure bool     `json:"required_for_closure"`
	RequiredForAgents  bool     `json:"required_for_agents"`
	Type               string   `json:"type"`
	Default            bool     `json:"default"`
	CustomersCanEdit   bool     `json:"customers_can_edit"`
	Choices            any      `json:"choices"`
	Statuses           []Status `json:"statuses,omitempty"`
	Pipelines          []Pipe   `json:"pipelines,omitempty"`
}

// Status is a status code with its name and category (open, pending,
// resolved, closed).
type Status struct {
	Code     int    `json:"code"`
	Name     string `json:"name"`
	Category string `json:"category"`
}

// Pipe is a pipeline: its ordered statuses and its rules.
type Pipe struct {
	ID                  int64    `json:"id"`
	Name                string   `json:"name"`
	Statuses            []int    `json:"statuses"`
	NewStatus           int      `json:"new_status"`
	CustomerReplyStatus int      `json:"customer_reply_status"`
	AgentReplyStatus    *int     `json:"agent_reply_status"`
	ClosedReply         string   `json:"closed_reply"`
	ReopenWithinSeconds int64    `json:"reopen_within_seconds"`
	Channels            []string `json:"channels"`
}

// GET /api/v2/ticket_fields
func (s *server) ticketFields(w http.ResponseWriter, r *http.Request, a *store.Agent) {
	var statuses []store.Status
	var pipes []store.Pipeline
	var agents []store.Agent
	var chans []store.Channel
	err := s.st.Read(r.Context(), func(tx *store.Tx) error {
		var err error
		if statuses, err = tx.Statuses(); err != nil {
			return err
		}
		if pipes, err = tx.Pipelines(); err != nil {
			return err
		}
		if chans, err = tx.Channels(); err != nil {
			return err
		}
		agents, err = tx.Agents()
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	statusChoices := map[string][]string{}
	var sts []Status
	for _, st := range statuses {
		statusChoices[strconv.Itoa(st.Code)] = []string{st.Name, st.Name}
		sts = append(sts, Status{Code: st.Code, Name: st.Name, Category: st.Category})
	}
	var ps []Pipe
	for _, p := range pipes {
		pp := Pipe{ID: p.ID, Name: p.Name, Statuses: p.Statuses, NewStatus: p.NewStatus, CustomerReplyStatus: p.CustomerReplyStatus,
			AgentReplyStatus: p.AgentReplyStatus, ClosedReply: p.ClosedReply, ReopenWithinSeconds: int64(p.ReopenWithin.Seconds()), Channels: []string{}}
		if pp.Statuses == nil {
			pp.Statuses = []int{}
		}
		for _, c := range chans {
			if c.PipelineID != nil && *c.PipelineID == p.ID {
				pp.Channels = append(pp.Channels, c.Name)
			}
		}
		ps = append(ps, pp)
	}
	groups := map[string]int{}
	for i, g := range s.groups {
		groups[g] = i + 1
	}
	agentChoices := map[string]int64{}
	for _, ag := range agents {
		if ag.Active {
			name := ag.Name
			if name == "" {
				name = ag.Email
			}
			agentChoices[name] = ag.ID
		}
	}
	fields := []TicketField{
		{Name: "requester", Label: "Search a requester", Type: "default_requester", RequiredForAgents: true},
		{Name: "subject", Label: "Subject", Type: "default_subject", RequiredForAgents: true},
		{Name: "ticket_type", Label: "Type", Type: "default_ticket_type", Choices: []string{}},
		{Name: "source", Label: "Source", Type: "default_source",
			Choices: map[string]int{"Email": 1, "Portal": 2, "Phone": 3, "Chat": 7, "Feedback Widget": 9, "Outbound Email": 10}},
		{Name: "status", Label: "Status", Type: "default_status", RequiredForAgents: true, Choices: statusChoices, Statuses: sts, Pipelines: ps},
		{Name: "priority", Label: "Priority", Type: "default_priority", RequiredForAgents: true,
			Choices: map[string]int{"Low": 1, "Medium": 2, "High": 3, "Urgent": 4}},
		{Name: "group", Label: "Group", Type: "default_group", Choices: groups},
		{Name: "agent", Label: "Agent", Type: "default_agent", Choices: agentChoices},
		{Name: "description", Label: "Description", Type: "default_description", RequiredForAgents: true},
	}
	for _, f := range s.p.Engine().CustomFields {
		tf := TicketField{Name: f.Name, Label: f.Name, Type: "custom_text"}
		switch f.Type {
		case "number":
			tf.Type = "custom_number"
		case "choice":
			tf.Type, tf.Choices = "custom_dropdown", f.Choices
		}
		fields = append(fields, tf)
	}
	for i := range fields {
		fields[i].ID, fields[i].Position, fields[i].Default = int64(i+1), i+1, true
		if fields[i].Choices == nil {
			fields[i].Choices = []string{}
		}
	}
	writeJSON(w, http.StatusOK, fields)
}
