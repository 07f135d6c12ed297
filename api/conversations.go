package api

import (
	"errors"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/store"
)

// GET /api/v2/tickets/{id}/conversations lists the replies and notes
// after the description (the first message is the ticket's
// description, as in Freshdesk), oldest first.
func (s *server) listConversations(w http.ResponseWriter, r *http.Request, a *store.Agent) {
	ticketPage(s, w, r, a, func(tx *store.Tx, id int64) ([]store.Conversation, error) {
		convs, err := tx.Conversations(id)
		if len(convs) > 0 {
			convs = convs[1:]
		}
		return convs, err
	}, func(c *store.Conversation, base string) Conversation { return conversationJSON(c, base) })
}

// ticketPage serves a paginated list that belongs to one ticket
// (/api/v2/tickets/{id}/…): it reads the ticket and its items in one
// snapshot, answers 403 for a ticket out of the agent's scope, and
// writes the page asked (with a Link header to the next one).
func ticketPage[T, J any](s *server, w http.ResponseWriter, r *http.Request, a *store.Agent,
	load func(tx *store.Tx, id int64) ([]T, error), toJSON func(item *T, base string) J) {
	id, ok := pathID(r)
	if !ok {
		notFound(w)
		return
	}
	q := r.URL.Query()
	var fe fieldErrors
	checkQuery(q, &fe, "page", "per_page")
	pageNo, perPage := page(q, &fe)
	if len(fe) > 0 {
		writeValidation(w, fe)
		return
	}
	var tk *store.Ticket
	var items []T
	err := s.st.Read(r.Context(), func(tx *store.Tx) error {
		var err error
		if tk, err = tx.Ticket(id); err != nil {
			return err
		}
		items, err = load(tx, id)
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
	start := min((pageNo-1)*perPage, len(items))
	end := min(start+perPage, len(items))
	base := s.baseURL(r)
	out := make([]J, 0, end-start)
	for i := start; i < end; i++ {
		out = append(out, toJSON(&items[i], base))
	}
	if end < len(items) {
		s.setNextLink(w, r, pageNo)
	}
	writeJSON(w, http.StatusOK, out)
}

// actingAgent resolves user_id: an admin may act as another agent; an
// agent only as themselves.
func (s *server) actingAgent(tx *store.Tx, a *store.Agent, userID *int64, fe *fieldErrors) (*store.Agent, bool, error) {
	if userID == nil || *userID == a.ID {
		return a, true, nil
	}
	if a.Role != "admin" {
		return nil, false, nil
	}
	other, err := tx.Agent(*userID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !other.Active) {
		fe.add("user_id", codeInvalidValue, "There is no agent matching the given user_id")
		return a, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	return other, true, nil
}

// messageInput reads body (required), attachments and user_id, common
// to reply and notes. It answers the request itself on failure.
func (s *server) messageInput(w http.ResponseWriter, r *http.Request, a *store.Agent, allowed ...string) (*input, *store.Ticket, *store.Agent, ingest.APIMessage, fieldErrors, bool) {
	var msg ingest.APIMessage
	var fe fieldErrors
	id, ok := pathID(r)
	if !ok {
		notFound(w)
		return nil, nil, nil, msg, nil, false
	}
	in := s.readInput(w, r, true)
	if in == nil {
		return nil, nil, nil, msg, nil, false
	}
	in.checkUnknown(&fe, append([]string{"body", "user_id", "attachments"}, allowed...)...)
	switch v := in.str("body", &fe); {
	case v != nil && strings.TrimSpace(*v) != "":
		msg.HTML = *v
	case v != nil || !in.has("body"):
		// (a body of the wrong type is already reported)
		fe.add("body", codeMissingField, "It should not be blank as this is a mandatory field")
	}
	if !in.multipart {
		in.emptyOnly(&fe, "attachments")
	}
	msg.Files = in.attachments(&fe)
	userID := in.integer("user_id", &fe)
	var tk *store.Ticket
	actor := a
	allowedActor := true
	err := s.st.Read(r.Context(), func(tx *store.Tx) error {
		var err error
		if tk, err = tx.Ticket(id); err != nil {
			return err
		}
		actor, allowedActor, err = s.actingAgent(tx, a, userID, &fe)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return nil, nil, nil, msg, nil, false
	}
	if !s.visible(a, tk.Channel) || !allowedActor {
		forbidden(w)
		return nil, nil, nil, msg, nil, false
	}
	return in, tk, actor, msg, fe, true
}

// POST /api/v2/tickets/{id}/reply
func (s *server) reply(w http.ResponseWriter, r *http.Request, a *store.Agent) {
	in, tk, actor, msg, fe, ok := s.messageInput(w, r, a, "cc_emails", "bcc_emails", "from_email")
	if !ok {
		return
	}
	in.emptyOnly(&fe, "bcc_emails", "from_email")
	for _, cc := range in.strs("cc_emails", &fe) {
		if !validEmail(cc) {
			fe.add("cc_emails", codeInvalidValue, "It should contain elements in the 'valid email address' format")
			break
		}
		msg.Cc = append(msg.Cc, cc)
	}
	if len(fe) > 0 {
		writeValidation(w, fe)
		return
	}
	if tk.Deleted {
		writeCode(w, http.StatusConflict, "inconsistent_state", "The ticket is in the trash; restore it before replying.")
		return
	}
	_, conv, err := s.p.Reply(r.Context(), tk.ID, msg, actor)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.kick()
	writeJSON(w, http.StatusCreated, conversationJSON(conv, s.baseURL(r)))
}

// POST /api/v2/tickets/{id}/notes: the assigned agent is told of the
// note, and each agent notify_emails names besides (the response's
// notified_to); naming anyone who is not an active agent is a 400.
func (s *server) addNote(w http.ResponseWriter, r *http.Request, a *store.Agent) {
	in, tk, actor, msg, fe, ok := s.messageInput(w, r, a, "private", "incoming", "notify_emails")
	if !ok {
		return
	}
	private, incoming := true, false
	if v := in.boolean("private", &fe); v != nil {
		private = *v
	}
	if v := in.boolean("incoming", &fe); v != nil {
		incoming = *v
	}
	notify := in.strs("notify_emails", &fe)
	if len(notify) > 0 {
		err := s.st.Read(r.Context(), func(tx *store.Tx) error {
			for _, n := range notify {
				if _, err := tx.AgentByEmail(strings.ToLower(strings.TrimSpace(n))); errors.Is(err, store.ErrNotFound) {
					fe.add("notify_emails", codeInvalidValue, "There is no agent with the address "+n)
				} else if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			s.fail(w, r, err)
			return
		}
	}
	if len(fe) > 0 {
		writeValidation(w, fe)
		return
	}
	conv, err := s.p.AddNote(r.Context(), tk.ID, msg, private, incoming, notify, actor)
	if errors.Is(err, ingest.ErrNotAgent) {
		writeValidation(w, []FieldError{{Field: "notify_emails", Message: err.Error(), Code: codeInvalidValue}})
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.kick()
	writeJSON(w, http.StatusCreated, Note{Conversation: conversationJSON(conv, s.baseURL(r)), NotifiedTo: nonNil(conv.ToEmails)})
}

// conversationInScope loads a conversation and its ticket, answering
// 404/403 itself.
func (s *server) conversationInScope(w http.ResponseWriter, r *http.Request, a *store.Agent) (*store.Conversation, bool) {
	id, ok := pathID(r)
	if !ok {
		notFound(w)
		return nil, false
	}
	var c *store.Conversation
	err := s.st.Read(r.Context(), func(tx *store.Tx) error {
		var err error
		c, err = tx.Conversation(id)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return nil, false
	}
	if _, ok := s.ticketInScope(w, r, a, c.TicketID); !ok {
		return nil, false
	}
	return c, true
}

// PUT /api/v2/conversations/{id} edits a note's body.
func (s *server) editConversation(w http.ResponseWriter, r *http.Request, a *store.Agent) {
	c, ok := s.conversationInScope(w, r, a)
	if !ok {
		return
	}
	in := s.readInput(w, r, false)
	if in == nil {
		return
	}
	var fe fieldErrors
	in.checkUnknown(&fe, "body", "attachments")
	in.emptyOnly(&fe, "attachments")
	body := in.str("body", &fe)
	if body == nil || strings.TrimSpace(*body) == "" {
		fe.add("body", codeMissingField, "It should not be blank as this is a mandatory field")
	}
	if len(fe) > 0 {
		writeValidation(w, fe)
		return
	}
	if c.Kind != "note" {
		writeCode(w, http.StatusConflict, "inconsistent_state", "Only notes can be edited; mail that was received or sent cannot be changed.")
		return
	}
	conv, err := s.p.EditNote(r.Context(), c.ID, ingest.APIMessage{HTML: *body}, a)
	if errors.Is(err, ingest.ErrNotNote) {
		writeCode(w, http.StatusConflict, "inconsistent_state", "Only notes can be edited; mail that was received or sent cannot be changed.")
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, conversationJSON(conv, s.baseURL(r)))
}

// DELETE /api/v2/conversations/{id}
func (s *server) deleteConversation(w http.ResponseWriter, r *http.Request, a *store.Agent) {
	c, ok := s.conversationInScope(w, r, a)
	if !ok {
		return
	}
	if err := s.p.DeleteConversation(r.Context(), c.ID, a); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// GET /api/v2/attachments/{id} downloads a file of a conversation the
// agent may see. The name is made safe and the content is never
// rendered inline (attachment disposition, nosniff, sandbox CSP).
func (s *server) attachment(w http.ResponseWriter, r *http.Request, a *store.Agent) {
	id, ok := pathID(r)
	if !ok {
		notFound(w)
		return
	}
	var att *store.Attachment
	var tk *store.Ticket
	err := s.st.Read(r.Context(), func(tx *store.Tx) error {
		var err error
		att, tk, err = AttachmentWithTicket(tx, id)
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
	ct := att.ContentType
	if _, _, err := mime.ParseMediaType(ct); err != nil || ct == "" {
		ct = "application/octet-stream"
	}
	WriteDownload(w, ct, AttachmentName(att), att.Content)
}

// AttachmentWithTicket reads an attachment's content and the ticket
// it belongs to (whose channel decides who may download it).
func AttachmentWithTicket(tx *store.Tx, id int64) (*store.Attachment, *store.Ticket, error) {
	att, err := tx.AttachmentContent(id)
	if err != nil {
		return nil, nil, err
	}
	c, err := tx.Conversation(att.ConversationID)
	if err != nil {
		return nil, nil, err
	}
	tk, err := tx.Ticket(c.TicketID)
	if err != nil {
		return nil, nil, err
	}
	return att, tk, nil
}

// AttachmentName is the file name a download offers: the stored name
// made safe, else attachment-ID.
func AttachmentName(att *store.Attachment) string {
	if name := ingest.SafeFilename(att.Filename); name != "" {
		return name
	}
	return "attachment-" + strconv.FormatInt(att.ID, 10)
}

// WriteDownload answers with content as a download the browser never
// renders: attachment disposition with name, nosniff and a sandbox
// CSP.
func WriteDownload(w http.ResponseWriter, contentType, name string, content []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	h.Set("Content-Security-Policy", "sandbox")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(content)))
	w.WriteHeader(http.StatusOK)
	w.Write(content)
}
