package api

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/deskmail/deskmail/store"
)

// defaultListWindow is how far back GET /api/v2/tickets looks without
// updated_since: Freshdesk lists only the tickets created in the past
// 30 days unless updated_since is given.
const defaultListWindow = 30 * 24 * time.Hour

// Freshdesk's predefined filters (filter=…).
const (
	filterNewAndMyOpen = "new_and_my_open"
	filterWatching     = "watching"
	filterSpam         = "spam"
	filterDeleted      = "deleted"
)

// listQuery is a parsed GET /api/v2/tickets request.
type listQuery struct {
	f               store.TicketFilter
	pageNo, perPage int
	inc             map[string]bool
	requesterID     int64
	channelID       int64
	channelName     string
	// empty is set when the filter can match nothing in deskmail
	// (watching, spam, company_id): the answer is [] at once.
	empty bool
}

// parseListQuery reads the list parameters with Freshdesk's defaults
// (order_by created_at, order_type desc, tickets created in the last
// 30 days unless updated_since is given) and errors; a is the caller,
// for new_and_my_open.
func (s *server) parseListQuery(q url.Values, a *store.Agent, fe *fieldErrors) listQuery {
	checkQuery(q, fe, "filter", "page", "per_page", "order_by", "order_type", "updated_since", "email", "requester_id",
		"company_id", "status", "priority", "channel", "email_config_id", "include")
	var lq listQuery
	lq.pageNo, lq.perPage = page(q, fe)
	lq.inc = includes(q, fe, "requester", "stats", "description")
	lq.f = store.TicketFilter{OrderBy: "created_at", Desc: true}
	switch v := q.Get("filter"); v {
	case "":
	case filterNewAndMyOpen:
		lq.f.OpenFor = a.ID
	case filterWatching, filterSpam:
		// deskmail has no watchers and never marks a ticket as spam.
		lq.empty = true
	case filterDeleted:
		lq.f.OnlyDeleted = true
	default:
		fe.add("filter", codeInvalidValue, "It should be one of these values: 'new_and_my_open,watching,spam,deleted'")
	}
	switch v := q.Get("order_by"); v {
	case "", "created_at", "due_by", "updated_at", "status", "priority":
		if v != "" {
			lq.f.OrderBy = v
		}
	default:
		fe.add("order_by", codeInvalidValue, "It should be one of these values: 'created_at,due_by,updated_at,status,priority'")
	}
	switch q.Get("order_type") {
	case "", "desc":
	case "asc":
		lq.f.Desc = false
	default:
		fe.add("order_type", codeInvalidValue, "It should be one of these values: 'asc,desc'")
	}
	if v := q.Get("updated_since"); v != "" {
		t, ok := parseSince(v)
		if !ok {
			fe.add("updated_since", codeInvalidValue, "It should be in the 'YYYY-MM-DDTHH:MM:SSZ' format")
		}
		lq.f.UpdatedSince = t
	} else {
		lq.f.CreatedSince = s.now().Add(-defaultListWindow)
	}
	if v := q.Get("status"); v != "" {
		for _, part := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(part))
			if err != nil || s.p.Engine().Life.Category(n) == "" {
				fe.add("status", codeInvalidValue, "It should be one of these values: "+s.statusCodes(nil))
				break
			}
			lq.f.Status = append(lq.f.Status, n)
		}
	}
	if v := q.Get("priority"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 4 {
			fe.add("priority", codeInvalidValue, "It should be one of these values: 1,2,3,4")
		}
		lq.f.Priority = n
	}
	lq.f.RequesterEmail = strings.TrimSpace(q.Get("email"))
	positive := func(name string) int64 {
		v := q.Get(name)
		if v == "" {
			return 0
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			fe.add(name, codeDatatypeMismatch, "It should be a/an Positive Integer")
			return 0
		}
		return n
	}
	lq.requesterID = positive("requester_id")
	lq.channelID = positive("email_config_id")
	if positive("company_id") > 0 {
		// deskmail has no companies: every ticket's company_id is null.
		lq.empty = true
	}
	lq.channelName = q.Get("channel")
	return lq
}

// GET /api/v2/tickets
func (s *server) listTickets(w http.ResponseWriter, r *http.Request, a *store.Agent) {
	var fe fieldErrors
	lq := s.parseListQuery(r.URL.Query(), a, &fe)
	if len(fe) > 0 {
		writeValidation(w, fe)
		return
	}
	if lq.empty {
		writeJSON(w, http.StatusOK, []Ticket{})
		return
	}
	f := lq.f
	base := s.baseURL(r)
	var out []Ticket
	more := false
	forbiddenChannel := false
	err := s.st.Read(r.Context(), func(tx *store.Tx) error {
		if lq.requesterID > 0 {
			c, err := tx.Contact(lq.requesterID)
			if errors.Is(err, store.ErrNotFound) {
				return nil // no such requester: no tickets
			}
			if err != nil {
				return err
			}
			if f.RequesterEmail != "" && !strings.EqualFold(f.RequesterEmail, c.Email) {
				return nil
			}
			f.RequesterEmail = c.Email
		}
		var ch *store.Channel
		var err error
		switch {
		case lq.channelID > 0:
			ch, err = s.channelByID(tx, lq.channelID)
		case lq.channelName != "":
			ch, err = s.channelByName(tx, lq.channelName)
			if errors.Is(err, store.ErrNotFound) {
				if n, perr := strconv.ParseInt(lq.channelName, 10, 64); perr == nil {
					ch, err = s.channelByID(tx, n)
				}
			}
		}
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if ch != nil {
			if !s.visible(a, &ch.Name) {
				forbiddenChannel = true
				return nil
			}
			f.ChannelID = ch.ID
		}
		tks, hasMore, err := s.listVisible(tx, f, a, (lq.pageNo-1)*lq.perPage, lq.perPage)
		if err != nil {
			return err
		}
		more = hasMore
		out = make([]Ticket, 0, len(tks))
		for i := range tks {
			tk := &tks[i]
			var descr *store.Conversation
			if lq.inc["description"] {
				d, err := tx.Description(tk.ID)
				if err != nil {
					return err
				}
				if d != nil {
					descr = d
				} else {
					descr = &store.Conversation{}
				}
			}
			t := s.ticketJSON(tk, descr, base)
			t.Attachments = nil
			if lq.inc["stats"] {
				t.Stats = statsJSON(tk)
			}
			if lq.inc["requester"] {
				t.Requester = requesterJSON(tk)
			}
			out = append(out, t)
		}
		return nil
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if forbiddenChannel {
		forbidden(w)
		return
	}
	if out == nil {
		out = []Ticket{}
	}
	if more {
		s.setNextLink(w, r, lq.pageNo)
	}
	writeJSON(w, http.StatusOK, out)
}
