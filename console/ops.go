package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/deskmail/deskmail/api"
	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/opsreport"
	"github.com/deskmail/deskmail/store"
	"github.com/deskmail/deskmail/threading"
)

// opsLimit bounds each list of the dashboard.
const opsLimit = 100

// opsView is the ops dashboard's content: the report `deskmail
// status` prints (opsreport, the same numbers) and the rows behind it
// that an admin can act on.
type opsView struct {
	Report   *opsreport.Report
	Channels []opsChannel
	Outbox   []store.OutboxMail
	Raw      []rawRow
	Bouncing []store.Contact
	Breaches []ticketRow
}

type opsChannel struct {
	opsreport.Channel
	Health string
	Class  string
}

type rawRow struct {
	store.RawMessage
	Channel string
}

// GET /ops (admins).
func (c *Console) opsPage(w http.ResponseWriter, r *http.Request, s *store.Session) {
	lang := c.lang(r, s)
	var view opsView
	err := c.st.Read(r.Context(), func(tx *store.Tx) error {
		rep, err := opsreport.Gather(tx, c.cfg, c.now())
		if err != nil {
			return err
		}
		rep.StoreKind = c.st.Kind()
		view.Report = rep
		for _, ch := range rep.Channels {
			h := ch.Health()
			oc := opsChannel{Channel: ch, Health: translate(lang, map[string]string{"ok": "ok", "failing": "failing", "never polled": "never.polled"}[h]), Class: "good"}
			if h == "failing" {
				oc.Class = "bad"
			}
			view.Channels = append(view.Channels, oc)
		}
		for _, state := range []string{"queued", "failed"} {
			mails, err := tx.ListOutbox(store.OutboxFilter{State: state, Limit: opsLimit})
			if err != nil {
				return err
			}
			view.Outbox = append(view.Outbox, mails...)
		}
		names, err := channelNames(tx)
		if err != nil {
			return err
		}
		raws, err := tx.ListRaw("failed", opsLimit)
		if err != nil {
			return err
		}
		for _, rm := range raws {
			row := rawRow{RawMessage: rm}
			if rm.ChannelID != nil {
				row.Channel = names[*rm.ChannelID]
			}
			view.Raw = append(view.Raw, row)
		}
		if view.Bouncing, err = tx.BouncingContacts(); err != nil {
			return err
		}
		f := store.TicketFilter{Escalated: true, OrderBy: "updated_at", Desc: true, Limit: opsLimit}
		life := c.p.Engine().Life
		for _, st := range life.Statuses() {
			if st.Category == threading.CategoryOpen || st.Category == threading.CategoryPending {
				f.Status = append(f.Status, st.Code)
			}
		}
		tks, err := tx.ListTickets(f)
		if err != nil {
			return err
		}
		for i := range tks {
			view.Breaches = append(view.Breaches, c.row(lang, &tks[i]))
		}
		return nil
	})
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.render(w, r, s, http.StatusOK, "ops", page{Lang: lang, Title: translate(lang, "ops"), Content: view})
}

func channelNames(tx *store.Tx) (map[int64]string, error) {
	chans, err := tx.Channels()
	if err != nil {
		return nil, err
	}
	out := map[int64]string{}
	for _, ch := range chans {
		out[ch.ID] = ch.Name
	}
	return out, nil
}

// opsWrite runs one change of the dashboard and answers with a
// redirect to it; a missing row (already sent, cancelled…) is 404.
func (c *Console) opsWrite(w http.ResponseWriter, r *http.Request, s *store.Session, done string, fn func(tx *store.Tx, id int64) error) {
	id, ok := pathID(r)
	if !ok {
		c.status(w, r, s, http.StatusNotFound, "notfound")
		return
	}
	err := c.st.Write(r.Context(), func(tx *store.Tx) error { return fn(tx, id) })
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.log.Info("console: "+done, "agent", s.Agent.Email, "id", id)
	c.kick()
	redirect(w, r, "/ops", done)
}

// POST /ops/outbox/{id}/retry delivers a failed or deferred mail now
// with a fresh attempt count (deskmail outbox retry).
func (c *Console) outboxRetry(w http.ResponseWriter, r *http.Request, s *store.Session) {
	c.opsWrite(w, r, s, "retried", func(tx *store.Tx, id int64) error { return tx.RequeueOutbox(id) })
}

// POST /ops/outbox/{id}/cancel gives a queued or failed mail up.
func (c *Console) outboxCancel(w http.ResponseWriter, r *http.Request, s *store.Session) {
	c.opsWrite(w, r, s, "cancelled", func(tx *store.Tx, id int64) error {
		return tx.CancelOutbox(id, "cancelled in the web console by "+s.Agent.Email)
	})
}

// GET /ops/raw/{id} downloads a raw message as received.
func (c *Console) rawDownload(w http.ResponseWriter, r *http.Request, s *store.Session) {
	id, ok := pathID(r)
	if !ok {
		c.status(w, r, s, http.StatusNotFound, "notfound")
		return
	}
	var rm *store.RawMessage
	err := c.st.Read(r.Context(), func(tx *store.Tx) error {
		var err error
		rm, err = tx.RawMessageByID(id)
		return err
	})
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	api.WriteDownload(w, "application/octet-stream", "raw-message-"+strconv.FormatInt(id, 10)+".eml", rm.Data)
}

// POST /ops/raw/{id}/reprocess sends a message kept raw after a
// failure through the pipeline again (after a fix), as its source
// would: the stored bytes, envelope and channel. The old row is marked
// re-processed (state duplicate, naming the new row) whatever the
// outcome, so a message failing again still counts once.
func (c *Console) rawReprocess(w http.ResponseWriter, r *http.Request, s *store.Session) {
	id, ok := pathID(r)
	if !ok {
		c.status(w, r, s, http.StatusNotFound, "notfound")
		return
	}
	lang := c.lang(r, s)
	var rm *store.RawMessage
	var chName string
	err := c.st.Read(r.Context(), func(tx *store.Tx) error {
		var err error
		if rm, err = tx.RawMessageByID(id); err != nil {
			return err
		}
		if rm.State != "failed" {
			return fmt.Errorf("raw message %d is %s, not failed: %w", id, rm.State, store.ErrNotFound)
		}
		if rm.ChannelID != nil {
			names, err := channelNames(tx)
			if err != nil {
				return err
			}
			chName = names[*rm.ChannelID]
		}
		return nil
	})
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	raw := ingest.Raw{Data: rm.Data, Source: ingest.Source(rm.Source), Channel: chName, Name: rm.Name}
	if b, ok := rm.Envelope.(json.RawMessage); ok {
		_ = json.Unmarshal(b, &raw.Envelope) // a broken envelope re-processes without one
	}
	if !c.knownChannel(raw.Channel) {
		raw.Channel = ""
	}
	res, err := c.p.Ingest(r.Context(), []ingest.Raw{raw})
	if err == nil && len(res) == 1 && res[0].Err != nil {
		err = res[0].Err
	}
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	out := res[0]
	note := fmt.Sprintf("re-processed in the web console by %s as raw message %d: %s", s.Agent.Email, out.RawID, out.Action)
	if out.Reason != "" {
		note += " (" + out.Reason + ")"
	}
	if err := c.st.Write(r.Context(), func(tx *store.Tx) error { return tx.SetRawState(id, "duplicate", note) }); err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.kick()
	c.log.Info("console: "+note, "raw_id", id)
	flash := tf(lang, "reprocessed", string(out.Action))
	if out.Reason != "" && out.Action == ingest.ActionIgnored {
		flash = tf(lang, "reprocess.failed", out.Reason)
	}
	c.render(w, r, s, http.StatusOK, "status", page{Lang: lang, Title: translate(lang, "reprocess"), Flash: flash})
}

func (c *Console) knownChannel(name string) bool {
	for _, n := range c.p.ChannelNames() {
		if n == name && n != "" {
			return true
		}
	}
	return false
}

// POST /ops/contacts/unflag clears a contact's bouncing flag
// (deskmail contacts unflag).
func (c *Console) unflag(w http.ResponseWriter, r *http.Request, s *store.Session) {
	email := strings.TrimSpace(r.PostFormValue("email"))
	var was *store.Contact
	err := c.st.Write(r.Context(), func(tx *store.Tx) error {
		var err error
		was, err = tx.ClearBouncing(email)
		return err
	})
	if err == nil && was == nil {
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) {
		c.status(w, r, s, http.StatusNotFound, "notfound")
		return
	}
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.log.Info("console: bouncing flag cleared", "agent", s.Agent.Email, "contact", email)
	redirect(w, r, "/ops", "unflagged")
}
