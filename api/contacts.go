package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/deskmail/deskmail/store"
)

// GET /api/v2/contacts (filter: email)
func (s *server) listContacts(w http.ResponseWriter, r *http.Request, a *store.Agent) {
	q := r.URL.Query()
	var fe fieldErrors
	checkQuery(q, &fe, "page", "per_page", "email")
	pageNo, perPage := page(q, &fe)
	if len(fe) > 0 {
		writeValidation(w, fe)
		return
	}
	out := []Contact{}
	more := false
	err := s.st.Read(r.Context(), func(tx *store.Tx) error {
		if email := strings.TrimSpace(q.Get("email")); email != "" {
			c, err := tx.ContactByEmail(email)
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			if pageNo == 1 {
				out = append(out, contactJSON(c))
			}
			return nil
		}
		cs, err := tx.Contacts((pageNo-1)*perPage, perPage+1)
		if err != nil {
			return err
		}
		if len(cs) > perPage {
			cs, more = cs[:perPage], true
		}
		for i := range cs {
			out = append(out, contactJSON(&cs[i]))
		}
		return nil
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if more {
		s.setNextLink(w, r, pageNo)
	}
	writeJSON(w, http.StatusOK, out)
}

// GET /api/v2/contacts/{id}
func (s *server) viewContact(w http.ResponseWriter, r *http.Request, a *store.Agent) {
	id, ok := pathID(r)
	if !ok {
		notFound(w)
		return
	}
	var c *store.Contact
	err := s.st.Read(r.Context(), func(tx *store.Tx) error {
		var err error
		c, err = tx.Contact(id)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, contactJSON(c))
}
