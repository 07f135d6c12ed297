package poller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/deskmail/deskmail/store"
)

// unfetchable returns the store's record of a message the server
// refused, or nil.
func (h *harness) unfetchable(uid uint32) *store.IMAPUnfetchable {
	h.t.Helper()
	cp := h.checkpoint("INBOX")
	if cp == nil {
		return nil
	}
	var u *store.IMAPUnfetchable
	err := h.st.Read(context.Background(), func(tx *store.Tx) (err error) {
		u, err = tx.IMAPUnfetchable("support", "INBOX", cp.UIDValidity, uid)
		return err
	})
	if err != nil {
		return nil
	}
	return u
}

// A message whose every FETCH the server answers NO is set aside after
// three sessions: recorded, shown in channel health, moved to the
// failed folder when the server allows it, and the mail after it
// becomes tickets.
func TestUnfetchableMessageSetAside(t *testing.T) {
	cases := []struct {
		name        string
		refuseMove  bool
		refuseSizes bool
	}{
		{name: "moved"},
		{name: "sizes-refused-too", refuseSizes: true},
		{name: "move-refused", refuseMove: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := memOptions{refuse: func(uid imap.UID) bool { return uid == 2 }, refuseSizes: tc.refuseSizes}
			if tc.refuseMove {
				o.refuseMove = func(uid imap.UID) bool { return uid == 2 }
			}
			b := memServer(t, o)
			c := b.client(t)
			for i := 1; i <= 3; i++ {
				b.appendWith(t, c, "INBOX", message(fmt.Sprintf("aside-%d@example.net", i), "kim@example.net", fmt.Sprintf("Order %d", i)), time.Now())
			}
			h := newHarness(t, b, "existing: import", "failed_folder: Deskmail/Failed")
			h.opts.setAsideAfter = time.Nanosecond // three sessions, however quick
			h.start()
			eventually(t, 10*time.Second, "the checkpoint past all three", func() bool {
				cp := h.checkpoint("INBOX")
				return cp != nil && cp.LastUID >= 3
			})
			h.stop()

			var subjects []string
			for _, tk := range h.tickets() {
				subjects = append(subjects, tk.Subject)
			}
			if strings.Join(subjects, ",") != "Order 1,Order 3" && strings.Join(subjects, ",") != "Order 3,Order 1" {
				t.Errorf("tickets %q, want Order 1 and Order 3", subjects)
			}
			var aside []store.IMAPUnfetchable
			var n int
			err := h.st.Read(context.Background(), func(tx *store.Tx) (err error) {
				if aside, err = tx.IMAPSetAside(""); err != nil {
					return err
				}
				n, err = tx.CountIMAPSetAside()
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(aside) != 1 || n != 1 {
				t.Fatalf("set aside: %+v (count %d), want uid 2", aside, n)
			}
			u := aside[0]
			wantMoved := "Deskmail/Failed"
			if tc.refuseMove {
				wantMoved = ""
			}
			if u.UID != 2 || u.Mailbox != "INBOX" || u.Attempts != 3 || u.SetAsideAt == nil || u.MovedTo != wantMoved ||
				!strings.Contains(u.ServerAnswer, "NO [SERVERBUG]") {
				t.Errorf("record = %+v", u)
			}
			hl := h.health()
			t.Logf("health: %q", hl.LastError)
			if !strings.Contains(hl.LastError, "support") || !strings.Contains(hl.LastError, "INBOX") ||
				!strings.Contains(hl.LastError, "uid 2") || !strings.Contains(hl.LastError, "set aside") {
				t.Errorf("health %q does not name the set-aside message", hl.LastError)
			}
			inbox, failed := b.flags(t, "INBOX"), b.flags(t, "Deskmail/Failed")
			for uid, f := range inbox {
				if uid != 2 && !hasFlag(f, imap.FlagSeen) {
					t.Errorf("uid %d not seen", uid)
				}
			}
			if tc.refuseMove {
				if _, ok := inbox[2]; !ok || len(failed) != 0 {
					t.Errorf("INBOX %v, failed folder %v: want uid 2 left in INBOX", inbox, failed)
				}
			} else if _, ok := inbox[2]; ok || len(failed) != 1 {
				t.Errorf("INBOX %v, failed folder %v: want uid 2 in the failed folder", inbox, failed)
			}
		})
	}
}

// A refusal that passes (the server's trouble ends) is no reason to set
// a message aside: within the default grace period the folder waits
// for it, then takes it and forgets the failures.
func TestRefusedMessageDeliveredLater(t *testing.T) {
	var refusing atomic.Bool
	refusing.Store(true)
	b := memServer(t, memOptions{refuse: func(uid imap.UID) bool { return uid == 2 && refusing.Load() }})
	c := b.client(t)
	for i := 1; i <= 3; i++ {
		b.appendWith(t, c, "INBOX", message(fmt.Sprintf("later-%d@example.net", i), "lee@example.net", fmt.Sprintf("Order %d", i)), time.Now())
	}
	h := newHarness(t, b, "existing: import")
	h.start()
	eventually(t, 10*time.Second, "four refused attempts", func() bool {
		u := h.unfetchable(2)
		return u != nil && u.Attempts >= 4
	})
	if u := h.unfetchable(2); u.SetAsideAt != nil {
		t.Fatalf("set aside within the grace period: %+v", u)
	}
	if n := len(h.tickets()); n != 1 {
		t.Fatalf("%d tickets while uid 2 is refused, want 1 (the mail before it)", n)
	}
	if hl := h.health(); !strings.Contains(hl.LastError, "uid 2") || hl.ConsecutiveFailures == 0 {
		t.Errorf("health while refused: %+v", hl)
	}
	refusing.Store(false)
	eventually(t, 10*time.Second, "three tickets", func() bool { return len(h.tickets()) == 3 })
	eventually(t, 10*time.Second, "the record cleared", func() bool { return h.unfetchable(2) == nil })
	h.stop()
}

// A message whose fetch makes the server drop the connection (or cut
// its literal short) is found by fetching one by one, counted per UID
// across reconnects and a restart of the pollers, set aside after three
// counted attempts and moved to the failed folder; every other message
// becomes a ticket (issue 13.6).
func TestDroppedFetchSetAside(t *testing.T) {
	for _, broken := range []bool{false, true} {
		t.Run(fmt.Sprintf("broken-literal=%v", broken), func(t *testing.T) {
			var calls atomic.Int32
			release := make(chan struct{})
			t.Cleanup(func() {
				select {
				case <-release:
				default:
					close(release)
				}
			})
			o := memOptions{brokenLiteral: broken, dropOn: func(uid imap.UID) bool {
				if uid != 2 {
					return false
				}
				// The third fetch of uid 2 hangs until the pollers are
				// stopped: a shutdown in the middle of a fetch.
				if calls.Add(1) == 3 {
					<-release
				}
				return true
			}}
			b := memServer(t, o)
			c := b.client(t)
			for i := 1; i <= 4; i++ {
				b.appendWith(t, c, "INBOX", message(fmt.Sprintf("drop-%d@example.net", i), "kim@example.net", fmt.Sprintf("Order %d", i)), time.Now())
			}
			h := newHarness(t, b, "existing: import", "failed_folder: Deskmail/Failed")
			h.opts.setAsideAfter = time.Nanosecond
			h.start()
			// 1: the batch breaks (nobody to blame yet); 2: uid 2 alone,
			// counted; 3: uid 2 again, hanging.
			eventually(t, 10*time.Second, "the third fetch of uid 2", func() bool { return calls.Load() >= 3 })
			if u := h.unfetchable(2); u == nil || u.Attempts != 2 {
				t.Fatalf("record during the third fetch: %+v, want 2 attempts counted", u)
			}
			h.stop()
			close(release)
			u := h.unfetchable(2)
			if u == nil || u.Attempts != 1 || u.SetAsideAt != nil {
				t.Fatalf("record after the restart: %+v, want 1 attempt (the one the shutdown broke is not counted)", u)
			}
			t.Logf("recorded answer: %q", u.ServerAnswer)
			if !strings.Contains(u.ServerAnswer, "EOF") || !strings.Contains(u.ServerAnswer, "fetch") {
				t.Errorf("answer %q does not say how the fetch broke off", u.ServerAnswer)
			}
			if n := len(h.tickets()); n != 1 {
				t.Errorf("%d tickets before uid 2 is set aside, want 1 (uid 1)", n)
			}

			h.start() // the pollers restart: the count goes on from 1
			eventually(t, 10*time.Second, "the checkpoint past all four", func() bool {
				cp := h.checkpoint("INBOX")
				return cp != nil && cp.LastUID >= 4
			})
			h.stop()
			if n := calls.Load(); n != 5 {
				t.Errorf("uid 2 fetched %d times, want 5 (a batch, then 3 counted attempts, one interrupted)", n)
			}
			var subjects []string
			for _, tk := range h.tickets() {
				subjects = append(subjects, tk.Subject)
			}
			slices.Sort(subjects)
			if strings.Join(subjects, ",") != "Order 1,Order 3,Order 4" {
				t.Errorf("tickets %q, want Order 1, 3 and 4", subjects)
			}
			u = h.unfetchable(2)
			if u == nil || u.Attempts != 3 || u.SetAsideAt == nil || u.MovedTo != "Deskmail/Failed" {
				t.Fatalf("record = %+v, want set aside after 3 attempts and moved", u)
			}
			if hl := h.health(); !strings.Contains(hl.LastError, "uid 2") || !strings.Contains(hl.LastError, "set aside") {
				t.Errorf("health %q does not name the set-aside message", hl.LastError)
			}
			inbox, failed := b.flags(t, "INBOX"), b.flags(t, "Deskmail/Failed")
			if _, ok := inbox[2]; ok || len(failed) != 1 {
				t.Errorf("INBOX %v, failed folder %v: want uid 2 in the failed folder", inbox, failed)
			}
			for uid, f := range inbox {
				if !hasFlag(f, imap.FlagSeen) {
					t.Errorf("uid %d not seen", uid)
				}
			}
		})
	}
}
