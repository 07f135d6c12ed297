package api

import (
	"errors"
	"net/http"
	"regexp"
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

// PUT /api/v2/contacts/{id} (admins): name, and the deskmail extension
// "bouncing": false, which clears the address's bouncing flag so mail
// goes to it again. Only a proven bounce sets the flag: true is refused.
// languageTag is what a contact's language may be: a BCP 47 tag in
// lower case; mail to the contact is written in it when templates exist
// (else its primary language, else the channel's).
var languageTag = regexp.MustCompile(`^[a-z]{2,3}(-[a-z0-9]{2,8})*$`)

func (s *server) updateContact(w http.ResponseWriter, r *http.Request, a *store.Agent) {
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
	in.checkUnknown(&fe, "name", "bouncing", "language")
	name := in.str("name", &fe)
	lang := in.str("language", &fe)
	if lang != nil {
		l := strings.ToLower(strings.TrimSpace(*lang))
		if !languageTag.MatchString(l) {
			fe.add("language", codeInvalidValue, "It should be a language tag such as en, fr, de, es or pt-br")
		}
		lang = &l
	}
	bouncing := in.boolean("bouncing", &fe)
	if bouncing != nil && *bouncing {
		fe.add("bouncing", codeInvalidValue, "Only a delivery report proven to answer our mail flags an address; set false to clear the flag")
	}
	if len(fe) > 0 {
		writeValidation(w, fe)
		return
	}
	var c *store.Contact
	err := s.st.Write(r.Context(), func(tx *store.Tx) error {
		var err error
		if c, err = tx.Contact(id); err != nil {
			return err
		}
		if name != nil {
			if err := tx.SetContactName(id, strings.TrimSpace(*name)); err != nil {
				return err
			}
		}
		if lang != nil {
			if err := tx.SetContactLanguage(id, *lang); err != nil {
				return err
			}
		}
		if bouncing != nil {
			if _, err := tx.ClearBouncing(c.Email); err != nil {
				return err
			}
		}
		c, err = tx.Contact(id)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, contactJSON(c))
}
