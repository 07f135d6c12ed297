package api

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/deskmail/deskmail/search"
	"github.com/deskmail/deskmail/store"
)

// Freshdesk's search API pages: 30 results a page, pages 1 to 10.
const (
	searchPerPage  = 30
	searchMaxPages = 10
)

// SearchResults is the body of GET /api/v2/search/tickets and
// /api/v2/search/contacts: one page of results and how many match.
type SearchResults[T any] struct {
	Results []T `json:"results"`
	Total   int `json:"total"`
}

// ticketSchema is what a ticket search may name: Freshdesk's fields
// and the configured custom fields, by name and with Freshdesk's cf_
// prefix (built-in names win over a custom field of the same name).
func (s *server) ticketSchema() search.Schema {
	schema := store.TicketSearchFields()
	for _, f := range s.p.Engine().CustomFields {
		fd := search.Field{Type: search.String, Nullable: true, Custom: true, Key: f.Name}
		if f.Type == "number" {
			fd.Type = search.Number
		}
		if _, builtin := schema[f.Name]; !builtin {
			schema[f.Name] = fd
		}
		schema["cf_"+f.Name] = fd
	}
	return schema
}

// parseSearch reads query and page, adding Freshdesk's validation
// errors to fe.
func parseSearch(q url.Values, schema search.Schema, fe *fieldErrors) (search.Expr, int) {
	checkQuery(q, fe, "query", "page")
	pageNo := 1
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > searchMaxPages {
			fe.add("page", codeInvalidValue, "It should be a Positive Integer less than or equal to "+strconv.Itoa(searchMaxPages))
		} else {
			pageNo = n
		}
	}
	if _, ok := q["query"]; !ok {
		fe.add("query", codeMissingField, "Mandatory attribute missing")
		return nil, pageNo
	}
	inner, err := search.Unquote(q.Get("query"))
	var expr search.Expr
	if err == nil {
		expr, err = search.Parse(inner, schema)
	}
	var pe *search.Error
	switch {
	case err == nil:
	case errors.As(err, &pe):
		code := codeInvalidValue
		if _, known := schema[pe.Field]; pe.Field != "query" && !known {
			code = codeInvalidField
		}
		fe.add(pe.Field, code, pe.Error())
	default:
		fe.add("query", codeInvalidValue, err.Error())
	}
	return expr, pageNo
}

// scopeChannels is the channels agent a may search, nil for all.
func (s *server) scopeChannels(a *store.Agent) []string {
	return s.scopes.Channels(a)
}

// serveSearch answers a search: parses query and page against schema,
// then writes one page of what find returns (from the offset, at most
// limit) with the total.
func serveSearch[T any](s *server, w http.ResponseWriter, r *http.Request, schema search.Schema,
	find func(tx *store.Tx, expr search.Expr, offset, limit int) ([]T, int, error)) {
	var fe fieldErrors
	expr, pageNo := parseSearch(r.URL.Query(), schema, &fe)
	if len(fe) > 0 {
		writeValidation(w, fe)
		return
	}
	out := SearchResults[T]{Results: []T{}}
	err := s.st.Read(r.Context(), func(tx *store.Tx) error {
		res, total, err := find(tx, expr, (pageNo-1)*searchPerPage, searchPerPage)
		out.Results, out.Total = append(out.Results, res...), total
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// GET /api/v2/search/tickets?query="…"&page=N
func (s *server) searchTickets(w http.ResponseWriter, r *http.Request, a *store.Agent) {
	base := s.baseURL(r)
	serveSearch(s, w, r, s.ticketSchema(), func(tx *store.Tx, expr search.Expr, offset, limit int) ([]Ticket, int, error) {
		tks, total, err := tx.SearchTickets(store.TicketQuery{Where: expr, Groups: s.groups, Channels: s.scopeChannels(a),
			Offset: offset, Limit: limit})
		out := make([]Ticket, len(tks))
		for i := range tks {
			out[i] = s.ticketJSON(&tks[i], nil, base)
			out[i].Attachments = nil
		}
		return out, total, err
	})
}

// GET /api/v2/search/contacts?query="…"&page=N
func (s *server) searchContacts(w http.ResponseWriter, r *http.Request, a *store.Agent) {
	serveSearch(s, w, r, store.ContactSearchFields(), func(tx *store.Tx, expr search.Expr, offset, limit int) ([]Contact, int, error) {
		cs, total, err := tx.SearchContacts(store.ContactQuery{Where: expr, Offset: offset, Limit: limit})
		out := make([]Contact, len(cs))
		for i := range cs {
			out[i] = contactJSON(&cs[i])
		}
		return out, total, err
	})
}
