package console

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/deskmail/deskmail/api"
	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/locale"
	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
)

// perPage is the queue's page size.
const perPage = 25

// option is one choice of a <select>.
type option struct {
	Value, Label string
	Selected     bool
}

// queueView is the queue page's content.
type queueView struct {
	Query      url.Values
	Tickets    []ticketRow
	Statuses   []option
	Channels   []option
	Assignees  []option
	Priorities []option
	Search     string
	Breached   bool
	Page       int
	Prev, Next string
}

// ticketRow is one line of the queue.
type ticketRow struct {
	ID                            int64
	Subject, Status, Priority     string
	Requester, Channel, Responder string
	Updated                       string
	Category                      string
	Escalated                     bool
	PriorityLevel                 int
}

// statusName names a status in lang: the built-in codes by their
// category's word, custom ones by their configured name.
func statusName(lang string, code int, name, category string) string {
	if code >= 2 && code <= 5 && category != "" {
		return locale.StatusName(lang, category)
	}
	if name != "" {
		return name
	}
	return strconv.Itoa(code)
}

func (c *Console) lang(r *http.Request, s *store.Session) string {
	return requestLanguage(r, s.Agent.Language)
}

// GET /tickets: the queue, filtered by status, channel, assignee,
// priority, a missed SLA target and a search of subject and requester,
// newest update first,
// perPage a page; only tickets of the agent's channels (api.Scopes).
func (c *Console) queue(w http.ResponseWriter, r *http.Request, s *store.Session) {
	lang := c.lang(r, s)
	q := r.URL.Query()
	f := store.TicketFilter{OrderBy: "updated_at", Desc: true}
	life := c.p.Engine().Life
	statusQ := q.Get("status")
	switch statusQ {
	case "", "all":
	case "unresolved":
		for _, st := range life.Statuses() {
			if st.Category == threading.CategoryOpen || st.Category == threading.CategoryPending {
				f.Status = append(f.Status, st.Code)
			}
		}
	default:
		n, err := strconv.Atoi(statusQ)
		if err != nil || life.Category(n) == "" {
			c.status(w, r, s, http.StatusBadRequest, "invalid")
			return
		}
		f.Status = []int{n}
	}
	if v := q.Get("priority"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 4 {
			c.status(w, r, s, http.StatusBadRequest, "invalid")
			return
		}
		f.Priority = n
	}
	assignee := q.Get("assignee")
	switch assignee {
	case "":
	case "me":
		f.ResponderID = s.Agent.ID
	case "none":
		f.Unassigned = true
	default:
		n, err := strconv.ParseInt(assignee, 10, 64)
		if err != nil || n < 1 {
			c.status(w, r, s, http.StatusBadRequest, "invalid")
			return
		}
		f.ResponderID = n
	}
	f.Escalated = q.Get("sla") == "breached"
	f.Search = strings.TrimSpace(q.Get("q"))
	if len(f.Search) > 200 {
		f.Search = f.Search[:200]
	}
	pageNo := 1
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100000 {
			c.status(w, r, s, http.StatusBadRequest, "invalid")
			return
		}
		pageNo = n
	}
	chQ := q.Get("channel")
	view := queueView{Query: q, Search: f.Search, Breached: f.Escalated, Page: pageNo}
	forbidden := false
	err := c.st.Read(r.Context(), func(tx *store.Tx) error {
		chans, err := tx.Channels()
		if err != nil {
			return err
		}
		view.Channels = []option{{Value: "", Label: translate(lang, "any")}}
		for _, ch := range chans {
			name := ch.Name
			if !c.scopes.Visible(&s.Agent, &name) {
				if name == chQ {
					forbidden = true
					return nil
				}
				continue
			}
			if name == chQ {
				f.ChannelID = ch.ID
			}
			view.Channels = append(view.Channels, option{Value: name, Label: name, Selected: name == chQ})
		}
		if chQ != "" && f.ChannelID == 0 {
			return nil // no such channel: no tickets
		}
		agents, err := tx.Agents()
		if err != nil {
			return err
		}
		view.Assignees = []option{{Value: "", Label: translate(lang, "any")}, {Value: "me", Label: translate(lang, "mine"), Selected: assignee == "me"},
			{Value: "none", Label: translate(lang, "unassigned"), Selected: assignee == "none"}}
		for _, a := range agents {
			if a.Active {
				id := strconv.FormatInt(a.ID, 10)
				view.Assignees = append(view.Assignees, option{Value: id, Label: agentLabel(a), Selected: id == assignee})
			}
		}
		tks, more, err := c.scopes.ListTickets(tx, f, &s.Agent, (pageNo-1)*perPage, perPage)
		if err != nil {
			return err
		}
		for _, tk := range tks {
			view.Tickets = append(view.Tickets, c.row(lang, &tk))
		}
		if more {
			view.Next = "?" + queryWith(q, "page", strconv.Itoa(pageNo+1))
		}
		return nil
	})
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	if forbidden {
		c.status(w, r, s, http.StatusForbidden, "forbidden")
		return
	}
	if pageNo > 1 {
		prev := ""
		if pageNo > 2 {
			prev = strconv.Itoa(pageNo - 1)
		}
		view.Prev = "?" + queryWith(q, "page", prev)
	}
	view.Statuses = []option{{Value: "", Label: translate(lang, "any"), Selected: statusQ == ""}}
	for _, st := range life.Statuses() {
		v := strconv.Itoa(st.Code)
		view.Statuses = append(view.Statuses, option{Value: v, Label: statusName(lang, st.Code, st.Name, st.Category), Selected: v == statusQ})
	}
	view.Priorities = []option{{Value: "", Label: translate(lang, "any")}}
	for p := 1; p <= 4; p++ {
		v := strconv.Itoa(p)
		view.Priorities = append(view.Priorities, option{Value: v, Label: locale.PriorityName(lang, p), Selected: v == q.Get("priority")})
	}
	c.render(w, r, s, http.StatusOK, "queue", page{Lang: lang, Title: translate(lang, "tickets"), Content: view})
}

func agentLabel(a store.Agent) string {
	if a.Name != "" {
		return a.Name + " <" + a.Email + ">"
	}
	return a.Email
}

func (c *Console) row(lang string, tk *store.Ticket) ticketRow {
	row := ticketRow{ID: tk.ID, Subject: tk.Subject, Status: statusName(lang, tk.Status, tk.StatusName, tk.Category),
		Priority: locale.PriorityName(lang, tk.Priority), PriorityLevel: tk.Priority, Requester: tk.Requester.Email,
		Updated: formatTime(tk.UpdatedAt), Category: tk.Category, Escalated: tk.IsEscalated || tk.FrEscalated}
	if tk.Requester.Name != "" {
		row.Requester = tk.Requester.Name + " <" + tk.Requester.Email + ">"
	}
	if tk.Channel != nil {
		row.Channel = *tk.Channel
	}
	if tk.Responder != nil {
		row.Responder = *tk.Responder
	}
	if row.Subject == "" {
		row.Subject = locale.NoSubject(lang)
	}
	return row
}

// ticketView is the ticket page's content.
type ticketView struct {
	Ticket     ticketRow
	T          *store.Ticket
	Messages   []message
	History    []historyLine
	Statuses   []option
	Priorities []option
	Assignees  []option
}

// message is one conversation as shown.
type message struct {
	ID                int64
	From, To, Date    string
	Incoming, Private bool
	Kind              string
	HTML              template.HTML
	Text, Quoted      string
	Files             []store.Attachment
	Note              bool
}

type historyLine struct {
	At, Actor, Action, Field, Old, New, Note string
}

// GET /tickets/{id}: the conversation in order, the history and the
// action forms.
func (c *Console) ticket(w http.ResponseWriter, r *http.Request, s *store.Session) {
	id, ok := pathID(r)
	if !ok {
		c.status(w, r, s, http.StatusNotFound, "notfound")
		return
	}
	lang := c.lang(r, s)
	var view ticketView
	visible := true
	err := c.st.Read(r.Context(), func(tx *store.Tx) error {
		tk, err := tx.Ticket(id)
		if err != nil {
			return err
		}
		if !c.scopes.Visible(&s.Agent, tk.Channel) {
			visible = false
			return nil
		}
		view.T, view.Ticket = tk, c.row(lang, tk)
		convs, err := tx.Conversations(id)
		if err != nil {
			return err
		}
		for i := range convs {
			view.Messages = append(view.Messages, c.message(lang, &convs[i]))
		}
		hist, err := tx.TicketHistory(id)
		if err != nil {
			return err
		}
		for _, h := range hist {
			view.History = append(view.History, historyLine{At: formatTime(h.At), Actor: strings.TrimSpace(h.ActorType + " " + h.Actor),
				Action: h.Action, Field: h.Field, Old: deref(h.OldValue), New: deref(h.NewValue), Note: h.Note})
		}
		agents, err := tx.Agents()
		if err != nil {
			return err
		}
		view.Assignees = []option{{Value: "0", Label: translate(lang, "unassigned"), Selected: tk.ResponderID == nil}}
		for _, a := range agents {
			if !a.Active {
				continue
			}
			view.Assignees = append(view.Assignees, option{Value: strconv.FormatInt(a.ID, 10), Label: agentLabel(a),
				Selected: tk.ResponderID != nil && *tk.ResponderID == a.ID})
		}
		return nil
	})
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	if !visible {
		c.status(w, r, s, http.StatusForbidden, "forbidden")
		return
	}
	life := c.p.Engine().Life
	for _, code := range life.Pipeline(view.T.PipelineID).Statuses {
		st, _ := life.Status(code)
		v := strconv.Itoa(code)
		view.Statuses = append(view.Statuses, option{Value: v, Label: statusName(lang, code, st.Name, st.Category), Selected: code == view.T.Status})
	}
	for p := 1; p <= 4; p++ {
		view.Priorities = append(view.Priorities, option{Value: strconv.Itoa(p), Label: locale.PriorityName(lang, p), Selected: p == view.T.Priority})
	}
	c.render(w, r, s, http.StatusOK, "ticket", page{Lang: lang, Title: "#" + strconv.FormatInt(id, 10) + " " + view.Ticket.Subject, Content: view})
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func (c *Console) message(lang string, conv *store.Conversation) message {
	m := message{ID: conv.ID, From: conv.FromEmail, To: strings.Join(conv.ToEmails, ", "), Date: formatTime(conv.CreatedAt),
		Incoming: conv.Incoming, Private: conv.Private, Kind: conv.Kind, Note: conv.Kind == "note"}
	if conv.FromName != "" {
		m.From = conv.FromName + " <" + conv.FromEmail + ">"
	}
	for _, f := range conv.Files {
		if !f.Inline {
			m.Files = append(m.Files, f)
		}
	}
	if strings.TrimSpace(conv.BodyHTML) != "" {
		m.HTML = mailBody(lang, conv.BodyHTML, conv.Files)
	}
	if m.HTML == "" {
		m.Text, m.Quoted = textBody(conv)
	}
	return m
}

// ticketInScope reads a ticket and answers 404/403 itself.
func (c *Console) ticketInScope(w http.ResponseWriter, r *http.Request, s *store.Session) (*store.Ticket, bool) {
	id, ok := pathID(r)
	if !ok {
		c.status(w, r, s, http.StatusNotFound, "notfound")
		return nil, false
	}
	var tk *store.Ticket
	err := c.st.Read(r.Context(), func(tx *store.Tx) error {
		var err error
		tk, err = tx.Ticket(id)
		return err
	})
	if err != nil {
		c.fail(w, r, s, err)
		return nil, false
	}
	if !c.scopes.Visible(&s.Agent, tk.Channel) {
		c.status(w, r, s, http.StatusForbidden, "forbidden")
		return nil, false
	}
	return tk, true
}

func ticketPath(id int64) string { return "/tickets/" + strconv.FormatInt(id, 10) }

// POST /tickets/{id}/reply: a public reply, mailed through the outbox
// threaded to the customer's mail (ingest.Pipeline.Reply, as the
// API's reply). A ticket in the trash takes no reply.
func (c *Console) reply(w http.ResponseWriter, r *http.Request, s *store.Session) {
	c.postText(w, r, s, true, "reply.sent", func(tk *store.Ticket, m ingest.APIMessage, agent *store.Agent) error {
		_, _, err := c.p.Reply(viaConsole(r), tk.ID, m, agent)
		return err
	})
}

// POST /tickets/{id}/note: a private note (ingest.Pipeline.AddNote).
func (c *Console) note(w http.ResponseWriter, r *http.Request, s *store.Session) {
	c.postText(w, r, s, false, "note.added", func(tk *store.Ticket, m ingest.APIMessage, agent *store.Agent) error {
		_, err := c.p.AddNote(viaConsole(r), tk.ID, m, true, false, nil, agent)
		return err
	})
}

// postText runs a form's text (its body field, not empty) through add
// on a ticket of the agent's scope — refused for a ticket in the trash
// when notDeleted — then wakes the outbox and goes back to the ticket
// with the notice done.
func (c *Console) postText(w http.ResponseWriter, r *http.Request, s *store.Session, notDeleted bool, done string,
	add func(tk *store.Ticket, m ingest.APIMessage, agent *store.Agent) error) {
	tk, ok := c.ticketInScope(w, r, s)
	if !ok {
		return
	}
	body := strings.TrimSpace(r.PostFormValue("body"))
	if body == "" {
		c.status(w, r, s, http.StatusBadRequest, "empty.body")
		return
	}
	if notDeleted && tk.Deleted {
		c.status(w, r, s, http.StatusConflict, "invalid")
		return
	}
	agent := s.Agent
	if err := add(tk, ingest.APIMessage{Text: body}, &agent); err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.kick()
	redirect(w, r, ticketPath(tk.ID), done)
}

// POST /tickets/{id}/update: status, priority and assignee, validated
// and applied by the threading engine (ingest.Pipeline.UpdateFromAPI,
// as the API's PUT).
func (c *Console) update(w http.ResponseWriter, r *http.Request, s *store.Session) {
	tk, ok := c.ticketInScope(w, r, s)
	if !ok {
		return
	}
	var ch threading.Changes
	bad := false
	if v := r.PostFormValue("status"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			bad = true
		} else if n != tk.Status {
			ch.Status = &n
		}
	}
	if v := r.PostFormValue("priority"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 4 {
			bad = true
		} else if n != tk.Priority {
			ch.Priority = &n
		}
	}
	if v := r.PostFormValue("responder"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		switch {
		case err != nil || n < 0:
			bad = true
		case n == 0 && tk.ResponderID != nil, n > 0 && (tk.ResponderID == nil || *tk.ResponderID != n):
			if n > 0 {
				err := c.st.Read(r.Context(), func(tx *store.Tx) error {
					a, err := tx.Agent(n)
					if err == nil && !a.Active {
						err = store.ErrNotFound
					}
					return err
				})
				if errors.Is(err, store.ErrNotFound) {
					bad = true
				} else if err != nil {
					c.fail(w, r, s, err)
					return
				}
			}
			ch.Responder = &n
		}
	}
	if !bad && len(c.p.Engine().Validate(tk, ch)) > 0 {
		bad = true
	}
	if bad {
		c.status(w, r, s, http.StatusBadRequest, "invalid")
		return
	}
	if ch.Status != nil || ch.Priority != nil || ch.Responder != nil {
		agent := s.Agent
		if _, err := c.p.UpdateFromAPI(viaConsole(r), tk.ID, ch, nil, &agent); err != nil {
			c.fail(w, r, s, err)
			return
		}
		c.kick()
	}
	redirect(w, r, ticketPath(tk.ID), "saved")
}

// GET /attachments/{id} downloads a file of a ticket the agent may
// see; never shown inline, except an image of an inline part, which
// the conversation shows.
func (c *Console) attachment(w http.ResponseWriter, r *http.Request, s *store.Session) {
	id, ok := pathID(r)
	if !ok {
		c.status(w, r, s, http.StatusNotFound, "notfound")
		return
	}
	var att *store.Attachment
	var tk *store.Ticket
	err := c.st.Read(r.Context(), func(tx *store.Tx) error {
		var err error
		att, tk, err = api.AttachmentWithTicket(tx, id)
		return err
	})
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	if !c.scopes.Visible(&s.Agent, tk.Channel) {
		c.status(w, r, s, http.StatusForbidden, "forbidden")
		return
	}
	// Only raster images keep their type (an inline part's <img> shows
	// them); SVG, HTML and everything else are opaque downloads.
	ct := strings.ToLower(strings.TrimSpace(strings.Split(att.ContentType, ";")[0]))
	if !slices.Contains([]string{"image/png", "image/jpeg", "image/gif", "image/webp"}, ct) {
		ct = "application/octet-stream"
	}
	api.WriteDownload(w, ct, api.AttachmentName(att), att.Content)
}

// viaConsole is r's context marked as the console's, so that the
// ticket history records the changes made through the API's code path
// as the agent's own (actor type "agent", notes "through the
// console").
func viaConsole(r *http.Request) context.Context { return ingest.WithVia(r.Context(), "console") }
