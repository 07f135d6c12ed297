package api

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // time zone names are checked against the embedded IANA database

	"github.com/deskmail/deskmail/internal/lazyregexp"
	"github.com/deskmail/deskmail/store"
)

// GET /api/v2/contacts: the contacts that are not deleted, by id;
// filters email, phone and state (Freshdesk's: deleted lists the
// soft-deleted ones; verified is every other; blocked and unverified
// match nobody — deskmail has neither).
func (s *server) listContacts(w http.ResponseWriter, r *http.Request, a *store.Agent) {
	q := r.URL.Query()
	var fe fieldErrors
	checkQuery(q, &fe, "page", "per_page", "email", "phone", "state")
	pageNo, perPage := page(q, &fe)
	f := store.ContactFilter{Email: strings.TrimSpace(q.Get("email")), Phone: strings.TrimSpace(q.Get("phone")),
		Offset: (pageNo - 1) * perPage, Limit: perPage + 1}
	none := false
	switch state := q.Get("state"); state {
	case "", "verified":
	case "deleted":
		f.Deleted = true
	case "blocked", "unverified":
		none = true
	default:
		fe.add("state", codeInvalidValue, "It should be one of these values: 'blocked,deleted,unverified,verified'")
	}
	if len(fe) > 0 {
		writeValidation(w, fe)
		return
	}
	out := []Contact{}
	more := false
	err := s.st.Read(r.Context(), func(tx *store.Tx) error {
		if none {
			return nil
		}
		cs, err := tx.ListContacts(f)
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

// languageTag is what a contact's language may be: a BCP 47 tag in
// lower case; mail to the contact is written in it when templates exist
// (else its primary language, else the channel's).
var languageTag = lazyregexp.New(`^[a-z]{2,3}(-[a-z0-9]{2,8})*$`)

// timeZoneName is the shape of an IANA time zone name (Area/Location,
// or a single name such as UTC); time.LoadLocation then checks that it
// exists.
var timeZoneName = lazyregexp.New(`^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9][A-Za-z0-9_+-]*)*$`)

// contactFields reads the writable fields of a contact (POST and PUT):
// name, phone, language, time_zone and tags. An empty string (or null)
// clears phone, language and time_zone.
func contactFields(in *input, fe *fieldErrors) store.ContactChange {
	var ch store.ContactChange
	if v := in.str("name", fe); v != nil {
		n := strings.TrimSpace(*v)
		if n == "" || len(n) > 255 {
			fe.add("name", codeInvalidValue, "It should be 1 to 255 characters")
		}
		ch.Name = &n
	}
	if v := in.str("phone", fe); v != nil {
		p := strings.TrimSpace(*v)
		if len(p) > 255 || strings.ContainsAny(p, "\r\n") {
			fe.add("phone", codeInvalidValue, "It should be at most 255 characters on one line")
		}
		ch.Phone = &p
	}
	if v := in.str("language", fe); v != nil {
		l := strings.ToLower(strings.TrimSpace(*v))
		if l != "" && !languageTag.MatchString(l) {
			fe.add("language", codeInvalidValue, "It should be a language tag such as en, fr, de, es or pt-br")
		}
		ch.Language = &l
	}
	if v := in.str("time_zone", fe); v != nil {
		z := strings.TrimSpace(*v)
		if z != "" && !validTimeZone(z) {
			fe.add("time_zone", codeInvalidValue, "It should be an IANA time zone name such as Europe/Paris, America/New_York or UTC")
		}
		ch.TimeZone = &z
	}
	if v := in.strs("tags", fe); v != nil {
		tags := cleanTags(v, fe)
		ch.Tags = &tags
	}
	return ch
}

// cleanTags checks a tags array (tickets' and contacts'): each tag is
// trimmed, 1 to 255 characters without commas, and kept once.
func cleanTags(v []string, fe *fieldErrors) []string {
	tags := []string{}
	for _, t := range v {
		t = strings.TrimSpace(t)
		if t == "" || len(t) > 255 || strings.Contains(t, ",") {
			fe.add("tags", codeInvalidValue, "Each tag should be 1 to 255 characters without commas")
			break
		}
		if !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
	}
	return tags
}

// validTimeZone reports whether z names an IANA time zone (the Go
// runtime's embedded database, so the answer does not depend on the
// host's /usr/share/zoneinfo).
func validTimeZone(z string) bool {
	if !timeZoneName.MatchString(z) || z == "Local" {
		return false
	}
	_, err := time.LoadLocation(z)
	return err == nil
}

// POST /api/v2/contacts creates a contact: name and email are required
// (Freshdesk accepts a phone or another handle instead of the email;
// deskmail's contacts are addresses). An address that a contact —
// deleted or not — already has is Freshdesk's 409 duplicate_value,
// naming that contact's id in additional_info.user_id.
func (s *server) createContact(w http.ResponseWriter, r *http.Request, a *store.Agent) {
	in := s.readInput(w, r, false)
	if in == nil {
		return
	}
	var fe fieldErrors
	in.checkUnknown(&fe, "name", "email", "phone", "language", "time_zone", "tags")
	ch := contactFields(in, &fe)
	if ch.Name == nil {
		fe.add("name", codeMissingField, "It should not be blank as this is a mandatory field")
	}
	email := ""
	switch v := in.str("email", &fe); {
	case v == nil || strings.TrimSpace(*v) == "":
		if v != nil || !in.has("email") {
			fe.add("email", codeMissingField, "It should not be blank as this is a mandatory field (a deskmail contact is an email address)")
		}
	case !validEmail(strings.TrimSpace(*v)):
		fe.add("email", codeInvalidValue, "It should be in the 'valid email address' format")
	default:
		email = strings.ToLower(strings.TrimSpace(*v))
	}
	if len(fe) > 0 {
		writeValidation(w, fe)
		return
	}
	var c *store.Contact
	agentAddress := false
	err := s.st.Write(r.Context(), func(tx *store.Tx) error {
		if _, err := tx.AgentByEmail(email); err == nil {
			agentAddress = true
			return nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		var err error
		c, err = tx.CreateContact(email, ch)
		return err
	})
	switch {
	case agentAddress:
		writeJSON(w, http.StatusConflict, validationBody{Description: "Validation failed", Errors: []FieldError{{
			Field: "email", Message: "It should be a unique value (an agent has this address)", Code: codeDuplicateValue}}})
	case errors.Is(err, store.ErrDuplicate) && c != nil:
		writeJSON(w, http.StatusConflict, validationBody{Description: "Validation failed", Errors: []FieldError{{
			Field: "email", Message: "It should be a unique value", Code: codeDuplicateValue,
			AdditionalInfo: map[string]any{"user_id": c.ID}}}})
	case err != nil:
		s.fail(w, r, err)
	default:
		w.Header().Set("Location", s.baseURL(r)+"/api/v2/contacts/"+strconv.FormatInt(c.ID, 10))
		writeJSON(w, http.StatusCreated, contactJSON(c))
	}
}

// PUT /api/v2/contacts/{id} (admins): name, phone, language, time_zone,
// tags, and the deskmail extension "bouncing": false, which clears the
// address's bouncing flag so mail goes to it again. Only a proven
// bounce sets the flag: true is refused. A deleted contact must be
// restored first (409).
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
	in.checkUnknown(&fe, "name", "bouncing", "language", "phone", "time_zone", "tags")
	ch := contactFields(in, &fe)
	bouncing := in.boolean("bouncing", &fe)
	if bouncing != nil && *bouncing {
		fe.add("bouncing", codeInvalidValue, "Only a delivery report proven to answer our mail flags an address; set false to clear the flag")
	}
	if len(fe) > 0 {
		writeValidation(w, fe)
		return
	}
	var c *store.Contact
	deleted := false
	err := s.st.Write(r.Context(), func(tx *store.Tx) error {
		var err error
		if c, err = tx.Contact(id); err != nil {
			return err
		}
		if c.DeletedAt != nil {
			deleted = true
			return nil
		}
		if bouncing != nil {
			if _, err := tx.ClearBouncing(c.Email); err != nil {
				return err
			}
		}
		c, err = tx.UpdateContact(id, ch)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if deleted {
		writeCode(w, http.StatusConflict, "inconsistent_state", "The contact is deleted; restore it (PUT /api/v2/contacts/{id}/restore) before changing it.")
		return
	}
	writeJSON(w, http.StatusOK, contactJSON(c))
}

// DELETE /api/v2/contacts/{id} (admins) soft-deletes a contact, as
// Freshdesk does: it leaves the lists (state=deleted lists it), GET
// shows it with deleted: true, its tickets stay, and a new ticket its
// mail opens from then on goes to the trash with no confirmation and
// no agent notice (Freshdesk puts such mail in spam); its replies to
// tickets it already has thread as usual. PUT …/restore brings it
// back. Deleting a deleted contact is 404.
func (s *server) deleteContact(w http.ResponseWriter, r *http.Request, a *store.Agent) {
	s.setContactDeleted(w, r, true)
}

// PUT /api/v2/contacts/{id}/restore (admins) undoes a soft delete;
// restoring a contact that is not deleted is 404.
func (s *server) restoreContact(w http.ResponseWriter, r *http.Request, a *store.Agent) {
	s.setContactDeleted(w, r, false)
}

func (s *server) setContactDeleted(w http.ResponseWriter, r *http.Request, deleted bool) {
	id, ok := pathID(r)
	if !ok {
		notFound(w)
		return
	}
	err := s.st.Write(r.Context(), func(tx *store.Tx) error {
		if deleted {
			return tx.DeleteContact(id)
		}
		return tx.RestoreContact(id)
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
