package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
)

// page reads page and per_page (Freshdesk: page ≥ 1, 1 ≤ per_page ≤
// 100, default 30).
func page(q url.Values, fe *fieldErrors) (pageNo, perPage int) {
	pageNo, perPage = 1, defaultPerPage
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1_000_000 {
			fe.add("page", codeInvalidValue, "It should be a Positive Integer")
		} else {
			pageNo = n
		}
	}
	if v := q.Get("per_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPerPage {
			fe.add("per_page", codeInvalidValue, fmt.Sprintf("It should be a Positive Integer less than or equal to %d", maxPerPage))
		} else {
			perPage = n
		}
	}
	return pageNo, perPage
}

// setNextLink writes Freshdesk's Link header for the next page.
func (s *server) setNextLink(w http.ResponseWriter, r *http.Request, pageNo int) {
	q := r.URL.Query()
	q.Set("page", strconv.Itoa(pageNo+1))
	w.Header().Set("Link", fmt.Sprintf(`<%s%s?%s>; rel="next"`, s.baseURL(r), r.URL.Path, q.Encode()))
}

// checkQuery refuses query parameters the endpoint does not know.
func checkQuery(q url.Values, fe *fieldErrors, allowed ...string) {
	var keys []string
	for k := range q {
		if !slices.Contains(allowed, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		fe.add(k, codeInvalidField, "Unexpected/invalid field in request")
	}
}

// parseSince accepts Freshdesk's updated_since forms: RFC 3339 or a
// date.
func parseSince(v string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// includes parses include=a,b against the allowed values.
func includes(q url.Values, fe *fieldErrors, allowed ...string) map[string]bool {
	out := map[string]bool{}
	v := q.Get("include")
	if v == "" {
		return out
	}
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if !slices.Contains(allowed, part) {
			fe.add("include", codeInvalidValue, "It should be one of these values: '"+strings.Join(allowed, ",")+"'")
			return out
		}
		out[part] = true
	}
	return out
}

func (s *server) channelByID(tx *store.Tx, id int64) (*store.Channel, error) {
	chans, err := tx.Channels()
	if err != nil {
		return nil, err
	}
	for i := range chans {
		if chans[i].ID == id {
			return &chans[i], nil
		}
	}
	return nil, store.ErrNotFound
}

func (s *server) channelByName(tx *store.Tx, name string) (*store.Channel, error) {
	chans, err := tx.Channels()
	if err != nil {
		return nil, err
	}
	for i := range chans {
		if chans[i].Name == name {
			return &chans[i], nil
		}
	}
	return nil, store.ErrNotFound
}

func (s *server) listVisible(tx *store.Tx, f store.TicketFilter, a *store.Agent, offset, limit int) ([]store.Ticket, bool, error) {
	return s.scopes.ListTickets(tx, f, a, offset, limit)
}

// ListTickets returns one page of the tickets matching f that agent a
// may see, and whether more follow. Unscoped callers get the store's
// page directly; scoped agents' tickets are filtered in chunks. The
// caller checks that a channel named in f is visible.
func (s Scopes) ListTickets(tx *store.Tx, f store.TicketFilter, a *store.Agent, offset, limit int) ([]store.Ticket, bool, error) {
	if !s.Scoped(a) || f.ChannelID > 0 {
		f.Offset, f.Limit = offset, limit+1
		tks, err := tx.ListTickets(f)
		if err != nil {
			return nil, false, err
		}
		if len(tks) > limit {
			return tks[:limit], true, nil
		}
		return tks, false, nil
	}
	const chunk = 500
	var out []store.Ticket
	skip := offset
	for start := 0; ; start += chunk {
		f.Offset, f.Limit = start, chunk
		tks, err := tx.ListTickets(f)
		if err != nil {
			return nil, false, err
		}
		for _, tk := range tks {
			if !s.Visible(a, tk.Channel) {
				continue
			}
			if skip > 0 {
				skip--
				continue
			}
			if len(out) == limit {
				return out, true, nil
			}
			out = append(out, tk)
		}
		if len(tks) < chunk {
			return out, false, nil
		}
	}
}

// statusCodes lists the status codes allowed for a pipeline (all when
// nil), for error messages.
func (s *server) statusCodes(pipelineID *int64) string {
	life := s.p.Engine().Life
	var codes []int
	if pipelineID != nil {
		codes = append(codes, life.Pipeline(pipelineID).Statuses...)
	}
	if len(codes) == 0 {
		for _, st := range life.Statuses() {
			codes = append(codes, st.Code)
		}
	}
	slices.Sort(codes)
	parts := make([]string, len(codes))
	for i, c := range codes {
		parts[i] = strconv.Itoa(c)
	}
	return strings.Join(parts, ",")
}

// GET /api/v2/tickets/{id}
func (s *server) viewTicket(w http.ResponseWriter, r *http.Request, a *store.Agent) {
	id, ok := pathID(r)
	if !ok {
		notFound(w)
		return
	}
	q := r.URL.Query()
	var fe fieldErrors
	checkQuery(q, &fe, "include")
	inc := includes(q, &fe, "conversations", "requester", "stats")
	if len(fe) > 0 {
		writeValidation(w, fe)
		return
	}
	var tk *store.Ticket
	var convs []store.Conversation
	err := s.st.Read(r.Context(), func(tx *store.Tx) error {
		var err error
		if tk, err = tx.Ticket(id); err != nil {
			return err
		}
		if !s.visible(a, tk.Channel) {
			return nil
		}
		if inc["conversations"] {
			convs, err = tx.Conversations(id)
			return err
		}
		// Without the conversations, only the description is shown:
		// one row, however long the ticket.
		d, err := tx.Description(id)
		if d != nil {
			convs = []store.Conversation{*d}
		}
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !s.visible(a, tk.Channel) {
		forbidden(w)
		return
	}
	writeJSON(w, http.StatusOK, s.fullTicket(r, tk, convs, inc))
}

// fullTicket is a ticket with its description and the includes asked.
func (s *server) fullTicket(r *http.Request, tk *store.Ticket, convs []store.Conversation, inc map[string]bool) Ticket {
	base := s.baseURL(r)
	descr := &store.Conversation{}
	if len(convs) > 0 {
		descr = &convs[0]
	}
	t := s.ticketJSON(tk, descr, base)
	if inc["stats"] {
		t.Stats = statsJSON(tk)
	}
	if inc["requester"] {
		t.Requester = requesterJSON(tk)
	}
	if inc["conversations"] {
		list := []Conversation{}
		for i := 1; i < len(convs); i++ {
			list = append(list, conversationJSON(&convs[i], base))
		}
		t.Conversations = &list
	}
	return t
}

// ticketFieldsInput are the fields POST and PUT share.
type ticketChanges struct {
	status, priority *int
	typ, group       *string
	responder        *int64
	tags             []string
	subject          *string
	// customFields are configured custom fields ("" clears one).
	customFields map[string]string
}

// readTicketChanges reads and checks the fields create and update
// share. pipelineID is the ticket's pipeline (for status codes).
func (s *server) readTicketChanges(tx *store.Tx, in *input, fe *fieldErrors, pipelineID *int64) (ticketChanges, error) {
	var c ticketChanges
	life := s.p.Engine().Life
	if v := in.integer("status", fe); v != nil {
		n := int(*v)
		probe := &store.Ticket{PipelineID: pipelineID}
		if life.Category(n) == "" || len(s.p.Engine().Validate(probe, threading.Changes{Status: &n})) > 0 {
			fe.add("status", codeInvalidValue, "It should be one of these values: "+s.statusCodes(pipelineID))
		} else {
			c.status = &n
		}
	}
	if v := in.integer("priority", fe); v != nil {
		n := int(*v)
		if n < 1 || n > 4 {
			fe.add("priority", codeInvalidValue, "It should be one of these values: 1,2,3,4")
		} else {
			c.priority = &n
		}
	}
	if v := in.str("type", fe); v != nil {
		t := strings.TrimSpace(*v)
		if len(t) > 255 {
			fe.add("type", codeInvalidValue, "Has 255 characters, it can have maximum of 255 characters")
		} else {
			c.typ = &t
		}
	}
	if v := in.integer("group_id", fe); v != nil {
		switch {
		case *v == 0:
			empty := ""
			c.group = &empty
		case *v < 0 || *v > int64(len(s.groups)):
			fe.add("group_id", codeInvalidValue, "There is no group matching the given group_id")
		default:
			g := s.groups[*v-1]
			c.group = &g
		}
	}
	if v := in.str("group_name", fe); v != nil {
		if in.has("group_id") {
			fe.add("group_name", codeInvalidField, "Give group_id or group_name, not both")
		} else {
			g := strings.TrimSpace(*v)
			c.group = &g
		}
	}
	if v := in.integer("responder_id", fe); v != nil {
		if *v != 0 {
			ag, err := tx.Agent(*v)
			if errors.Is(err, store.ErrNotFound) || (err == nil && !ag.Active) {
				fe.add("responder_id", codeInvalidValue, "There is no agent matching the given responder_id")
			} else if err != nil {
				return c, err
			}
		}
		c.responder = v
	}
	if v := in.strs("tags", fe); v != nil {
		c.tags = cleanTags(v, fe)
	}
	if v := in.str("subject", fe); v != nil {
		t := strings.TrimSpace(*v)
		if len(t) > 255*4 {
			fe.add("subject", codeInvalidValue, "Is too long")
		} else {
			c.subject = &t
		}
	}
	c.customFields = in.customFields(fe)
	in.emptyOnly(fe, "due_by", "fr_due_by", "product_id", "company_id")
	return c, nil
}

func validEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == strings.TrimSpace(s) && strings.Contains(s, "@")
}

// POST /api/v2/tickets
//
// Source 10 (Freshdesk's outbound email) makes the description the
// agent's first message, mailed to the requester; any other source
// stores it as the requester's message and sends the confirmation.
func (s *server) createTicket(w http.ResponseWriter, r *http.Request, a *store.Agent) {
	in := s.readInput(w, r, true)
	if in == nil {
		return
	}
	var fe fieldErrors
	in.checkUnknown(&fe, "name", "email", "requester_id", "subject", "description", "status", "priority", "source", "type",
		"group_id", "group_name", "responder_id", "tags", "cc_emails", "email_config_id", "channel", "attachments",
		"custom_fields", "due_by", "fr_due_by", "product_id", "company_id")
	nt := ingest.NewTicket{}
	var customFields map[string]string
	if v := in.str("name", &fe); v != nil {
		nt.RequesterName = strings.TrimSpace(*v)
	}
	if v := in.str("email", &fe); v != nil {
		nt.RequesterEmail = strings.TrimSpace(*v)
		if !validEmail(nt.RequesterEmail) {
			fe.add("email", codeInvalidValue, "It should be in the 'valid email address' format")
		}
	}
	if v := in.str("subject", &fe); v != nil {
		nt.Subject = *v
	}
	if v := in.str("description", &fe); v != nil {
		nt.Description.HTML = *v
	}
	nt.Source = 2
	if v := in.integer("source", &fe); v != nil {
		if !slices.Contains([]int64{1, 2, 3, 7, 9, 10}, *v) {
			fe.add("source", codeInvalidValue, "It should be one of these values: 1,2,3,7,9,10")
		}
		nt.Source = int(*v)
	}
	nt.Outbound = nt.Source == 10
	if nt.Outbound && strings.TrimSpace(nt.Description.HTML) == "" {
		fe.add("description", codeMissingField, "It should not be blank as this is a mandatory field (source 10 mails it)")
	}
	ccs := in.strs("cc_emails", &fe)
	for _, cc := range ccs {
		if !validEmail(cc) {
			fe.add("cc_emails", codeInvalidValue, "It should contain elements in the 'valid email address' format")
			break
		}
	}
	nt.CcEmails = ccs
	if !in.multipart {
		in.emptyOnly(&fe, "attachments")
	}
	files := in.attachments(&fe)
	nt.Description.Files = files
	requesterID := in.integer("requester_id", &fe)
	chID := in.integer("email_config_id", &fe)
	chName := in.str("channel", &fe)
	var created *store.Ticket
	var convs []store.Conversation
	status := http.StatusCreated
	err := s.st.Read(r.Context(), func(tx *store.Tx) error {
		if requesterID != nil && *requesterID != 0 {
			c, err := tx.Contact(*requesterID)
			switch {
			case errors.Is(err, store.ErrNotFound):
				fe.add("requester_id", codeInvalidValue, "There is no contact matching the given requester_id")
			case err != nil:
				return err
			case nt.RequesterEmail != "" && !strings.EqualFold(nt.RequesterEmail, c.Email):
				fe.add("email", codeInvalidValue, "It does not match the requester_id's email")
			default:
				nt.RequesterEmail, nt.RequesterName = c.Email, c.Name
			}
		} else if nt.RequesterEmail == "" && !in.has("email") {
			fe.add("requester_id", codeMissingField, "Please fill at least 1 of email, requester_id fields")
		}
		var ch *store.Channel
		var err error
		switch {
		case chID != nil && *chID != 0:
			if ch, err = s.channelByID(tx, *chID); errors.Is(err, store.ErrNotFound) {
				fe.add("email_config_id", codeInvalidValue, "There is no email_config matching the given email_config_id")
			}
		case chName != nil && *chName != "":
			if ch, err = s.channelByName(tx, *chName); errors.Is(err, store.ErrNotFound) {
				fe.add("channel", codeInvalidValue, "There is no channel of this name")
			}
		default:
			if names := s.p.ChannelNames(); len(names) > 0 && names[0] != "" {
				ch, err = s.channelByName(tx, names[0])
				if errors.Is(err, store.ErrNotFound) {
					ch, err = nil, nil
				}
			}
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		var pipelineID *int64
		if ch != nil {
			nt.Channel, pipelineID = ch.Name, ch.PipelineID
			if !s.visible(a, &ch.Name) {
				status = http.StatusForbidden
				return nil
			}
		}
		c, err := s.readTicketChanges(tx, in, &fe, pipelineID)
		if err != nil {
			return err
		}
		if c.status != nil {
			nt.Status = *c.status
		}
		if c.priority != nil {
			nt.Priority = *c.priority
		}
		if c.typ != nil {
			nt.Type = *c.typ
		}
		if c.group != nil {
			nt.Group = *c.group
		}
		if c.responder != nil {
			nt.ResponderID = *c.responder
		}
		nt.Tags = c.tags
		if c.subject != nil {
			nt.Subject = *c.subject
		}
		customFields = c.customFields
		for _, e := range s.p.Engine().Validate(&store.Ticket{}, threading.Changes{CustomFields: c.customFields}) {
			fe.add("custom_fields", codeInvalidValue, e.Error())
		}
		return nil
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if status == http.StatusForbidden {
		forbidden(w)
		return
	}
	if len(fe) > 0 {
		writeValidation(w, fe)
		return
	}
	created, err = s.p.CreateTicket(r.Context(), nt, a)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if len(customFields) > 0 {
		if created, err = s.p.UpdateFromAPI(r.Context(), created.ID, threading.Changes{CustomFields: customFields}, nil, a); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	s.kick()
	err = s.st.Read(r.Context(), func(tx *store.Tx) error {
		var err error
		convs, err = tx.Conversations(created.ID)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Location", s.baseURL(r)+"/api/v2/tickets/"+strconv.FormatInt(created.ID, 10))
	writeJSON(w, http.StatusCreated, s.fullTicket(r, created, convs, nil))
}

// PUT /api/v2/tickets/{id}
func (s *server) updateTicket(w http.ResponseWriter, r *http.Request, a *store.Agent) {
	id, ok := pathID(r)
	if !ok {
		notFound(w)
		return
	}
	in := s.readInput(w, r, false)
	if in == nil {
		return
	}
	var fe fieldErrors
	in.checkUnknown(&fe, "subject", "status", "priority", "type", "group_id", "group_name", "responder_id", "tags",
		"custom_fields", "due_by", "fr_due_by", "product_id", "company_id")
	var changes threading.Changes
	var subject *string
	status := http.StatusOK
	err := s.st.Read(r.Context(), func(tx *store.Tx) error {
		tk, err := tx.Ticket(id)
		if err != nil {
			return err
		}
		if !s.visible(a, tk.Channel) {
			status = http.StatusForbidden
			return nil
		}
		c, err := s.readTicketChanges(tx, in, &fe, tk.PipelineID)
		if err != nil {
			return err
		}
		changes = threading.Changes{Status: c.status, Priority: c.priority, Type: c.typ, Group: c.group, Responder: c.responder,
			CustomFields: c.customFields}
		if c.tags != nil {
			have := map[string]bool{}
			for _, t := range tk.Tags {
				have[strings.ToLower(t)] = true
			}
			want := map[string]bool{}
			for _, t := range c.tags {
				want[strings.ToLower(t)] = true
				if !have[strings.ToLower(t)] {
					changes.AddTags = append(changes.AddTags, t)
				}
			}
			for _, t := range tk.Tags {
				if !want[strings.ToLower(t)] {
					changes.RemoveTags = append(changes.RemoveTags, t)
				}
			}
		}
		subject = c.subject
		for _, e := range s.p.Engine().Validate(tk, changes) {
			fe.add("ticket", codeInvalidValue, e.Error())
		}
		return nil
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if status == http.StatusForbidden {
		forbidden(w)
		return
	}
	if len(fe) > 0 {
		writeValidation(w, fe)
		return
	}
	tk, err := s.p.UpdateFromAPI(r.Context(), id, changes, subject, a)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.kick()
	var convs []store.Conversation
	err = s.st.Read(r.Context(), func(tx *store.Tx) error {
		var err error
		convs, err = tx.Conversations(id)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.fullTicket(r, tk, convs, nil))
}

// ticketInScope loads a ticket and answers 404/403 itself when it is
// missing or out of the agent's channels.
func (s *server) ticketInScope(w http.ResponseWriter, r *http.Request, a *store.Agent, id int64) (*store.Ticket, bool) {
	var tk *store.Ticket
	err := s.st.Read(r.Context(), func(tx *store.Tx) error {
		var err error
		tk, err = tx.Ticket(id)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return nil, false
	}
	if !s.visible(a, tk.Channel) {
		forbidden(w)
		return nil, false
	}
	return tk, true
}

// DELETE /api/v2/tickets/{id} moves the ticket to the trash.
func (s *server) deleteTicket(w http.ResponseWriter, r *http.Request, a *store.Agent) {
	s.setDeleted(w, r, a, true)
}

// PUT /api/v2/tickets/{id}/restore takes it out of the trash.
func (s *server) restoreTicket(w http.ResponseWriter, r *http.Request, a *store.Agent) {
	s.setDeleted(w, r, a, false)
}

func (s *server) setDeleted(w http.ResponseWriter, r *http.Request, a *store.Agent, deleted bool) {
	id, ok := pathID(r)
	if !ok {
		notFound(w)
		return
	}
	if _, ok := s.ticketInScope(w, r, a, id); !ok {
		return
	}
	if err := s.p.SetDeleted(r.Context(), id, deleted, a); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
