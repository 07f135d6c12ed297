package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func openIMAPTestStore(t *testing.T, k storeKind) *Store {
	t.Helper()
	return openKind(t, k, Options{})
}

func TestIMAPState(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		ctx := context.Background()
		st := openIMAPTestStore(t, k)
		err := st.Read(ctx, func(tx *Tx) error {
			_, err := tx.IMAPState("support", "INBOX")
			return err
		})
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("state of a new folder: %v, want ErrNotFound", err)
		}
		started := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
		err = st.Write(ctx, func(tx *Tx) error {
			return tx.PutIMAPState(IMAPState{Channel: "support", Mailbox: "INBOX", UIDValidity: 7, LastUID: 41, StartedAt: started, HistoryUID: 41})
		})
		if err != nil {
			t.Fatal(err)
		}
		// Advance forward, never back; a stale UIDVALIDITY changes nothing.
		err = st.Write(ctx, func(tx *Tx) error {
			if err := tx.AdvanceIMAPState("support", "INBOX", 7, 50); err != nil {
				return err
			}
			if err := tx.AdvanceIMAPState("support", "INBOX", 7, 45); err != nil {
				return err
			}
			if err := tx.AdvanceIMAPState("support", "INBOX", 8, 99); !errors.Is(err, ErrNotFound) {
				t.Errorf("advance with stale uidvalidity: %v, want ErrNotFound", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var s *IMAPState
		err = st.Read(ctx, func(tx *Tx) (err error) {
			s, err = tx.IMAPState("support", "INBOX")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if s.UIDValidity != 7 || s.LastUID != 50 || s.HistoryUID != 41 || !s.StartedAt.Equal(started) || s.HistoryBefore != nil {
			t.Fatalf("state = %+v", s)
		}
		// A UIDVALIDITY change: rescan from 0, history by date.
		s.UIDValidity, s.LastUID, s.HistoryUID, s.HistoryBefore = 9, 0, 0, &started
		if err := st.Write(ctx, func(tx *Tx) error { return tx.PutIMAPState(*s) }); err != nil {
			t.Fatal(err)
		}
		err = st.Read(ctx, func(tx *Tx) (err error) {
			s, err = tx.IMAPState("support", "INBOX")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if s.UIDValidity != 9 || s.LastUID != 0 || s.HistoryBefore == nil || !s.HistoryBefore.Equal(started) {
			t.Fatalf("state after reset = %+v", s)
		}
	})
}

func TestChannelHealth(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		ctx := context.Background()
		st := openIMAPTestStore(t, k)
		t0 := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
		steps := []func(tx *Tx) error{
			func(tx *Tx) error {
				return tx.RecordChannelError("support", t0, "imap support: dial: connection refused")
			},
			func(tx *Tx) error {
				return tx.RecordChannelError("support", t0.Add(time.Minute), "imap support: login: bad")
			},
		}
		for _, f := range steps {
			if err := st.Write(ctx, f); err != nil {
				t.Fatal(err)
			}
		}
		var h *ChannelHealth
		read := func() {
			t.Helper()
			err := st.Read(ctx, func(tx *Tx) (err error) {
				h, err = tx.ChannelHealth("support")
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		read()
		if h.ConsecutiveFailures != 2 || h.LastError != "imap support: login: bad" || h.LastOKAt != nil || !h.LastErrorAt.Equal(t0.Add(time.Minute)) {
			t.Fatalf("health = %+v", h)
		}
		if err := st.Write(ctx, func(tx *Tx) error { return tx.RecordChannelOK("support", t0.Add(2*time.Minute)) }); err != nil {
			t.Fatal(err)
		}
		read()
		if h.ConsecutiveFailures != 0 || h.LastOKAt == nil || !h.LastOKAt.Equal(t0.Add(2*time.Minute)) || !h.LastPollAt.Equal(*h.LastOKAt) || h.LastError == "" {
			t.Fatalf("health after ok = %+v", h)
		}
		var all []ChannelHealth
		if err := st.Read(ctx, func(tx *Tx) (err error) { all, err = tx.ChannelHealths(); return err }); err != nil {
			t.Fatal(err)
		}
		if len(all) != 1 || all[0].Channel != "support" {
			t.Fatalf("healths = %+v", all)
		}
	})
}

func TestOAuthRefreshToken(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		ctx := context.Background()
		st := openIMAPTestStore(t, k)
		err := st.Read(ctx, func(tx *Tx) error { _, err := tx.OAuthRefreshToken("m365"); return err })
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("token before any: %v", err)
		}
		for _, tok := range []string{"rt-1", "rt-2"} {
			if err := st.Write(ctx, func(tx *Tx) error { return tx.PutOAuthRefreshToken("m365", tok) }); err != nil {
				t.Fatal(err)
			}
		}
		var tok string
		if err := st.Read(ctx, func(tx *Tx) (err error) { tok, err = tx.OAuthRefreshToken("m365"); return err }); err != nil {
			t.Fatal(err)
		}
		if tok != "rt-2" {
			t.Fatalf("token = %q, want the rotated rt-2", tok)
		}
	})
}

func TestRawStates(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		ctx := context.Background()
		st := openIMAPTestStore(t, k)
		var ids []int64
		err := st.Write(ctx, func(tx *Tx) error {
			for _, state := range []string{"processed", "failed", "duplicate"} {
				id, err := tx.AddRaw(&RawMessage{Source: "imap", Data: []byte("x"), State: state})
				if err != nil {
					return err
				}
				ids = append(ids, id)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var got map[int64]string
		if err := st.Read(ctx, func(tx *Tx) (err error) { got, err = tx.RawStates(append(ids, 999)); return err }); err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 || got[ids[0]] != "processed" || got[ids[1]] != "failed" || got[ids[2]] != "duplicate" {
			t.Fatalf("states = %v", got)
		}
	})
}

func TestOAuthTokenOrigin(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		ctx := context.Background()
		st := openIMAPTestStore(t, k)
		if err := st.Write(ctx, func(tx *Tx) error { return tx.PutOAuthToken("m365", "rt-1", "hash-a") }); err != nil {
			t.Fatal(err)
		}
		// A rotation through the old call keeps the origin.
		if err := st.Write(ctx, func(tx *Tx) error { return tx.PutOAuthRefreshToken("m365", "rt-2") }); err != nil {
			t.Fatal(err)
		}
		var tok *SavedOAuthToken
		read := func() {
			t.Helper()
			if err := st.Read(ctx, func(tx *Tx) (err error) { tok, err = tx.OAuthToken("m365"); return err }); err != nil {
				t.Fatal(err)
			}
		}
		read()
		if tok.RefreshToken != "rt-2" || tok.ConfiguredSHA256 != "hash-a" || tok.UpdatedAt.IsZero() {
			t.Fatalf("token = %+v", tok)
		}
		if err := st.Write(ctx, func(tx *Tx) error { return tx.PutOAuthToken("m365", "new-rt", "hash-b") }); err != nil {
			t.Fatal(err)
		}
		read()
		if tok.RefreshToken != "new-rt" || tok.ConfiguredSHA256 != "hash-b" {
			t.Fatalf("token after re-authorization = %+v", tok)
		}
	})
}

func TestIMAPUnfetchable(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		ctx := context.Background()
		st := openIMAPTestStore(t, k)
		t0 := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
		var u *IMAPUnfetchable
		for i := range 3 {
			err := st.Write(ctx, func(tx *Tx) (err error) {
				u, err = tx.RecordIMAPFetchFailure("support", "INBOX", 7, 42, fmt.Sprintf("NO broken %d", i), t0.Add(time.Duration(i)*time.Minute))
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if u.Attempts != 3 || u.ServerAnswer != "NO broken 2" || !u.FirstFailedAt.Equal(t0) || !u.LastFailedAt.Equal(t0.Add(2*time.Minute)) || u.SetAsideAt != nil {
			t.Fatalf("record = %+v", u)
		}
		// Another message fails once, then is fetched after all: the
		// checkpoint passes both, and only the set-aside one (next) stays.
		err := st.Write(ctx, func(tx *Tx) error {
			if _, err := tx.RecordIMAPFetchFailure("support", "INBOX", 7, 43, "NO busy", t0); err != nil {
				return err
			}
			if err := tx.SetIMAPMessageAside("support", "INBOX", 7, 42, t0.Add(3*time.Minute)); err != nil {
				return err
			}
			if err := tx.ClearIMAPFetchFailures("support", "INBOX", 7, 43); err != nil {
				return err
			}
			if err := tx.SetIMAPMessageAside("support", "INBOX", 7, 99, t0); !errors.Is(err, ErrNotFound) {
				t.Errorf("set aside an unknown message: %v, want ErrNotFound", err)
			}
			return tx.SetIMAPMessageMoved("support", "INBOX", 7, 42, "Deskmail/Failed")
		})
		if err != nil {
			t.Fatal(err)
		}
		var list []IMAPUnfetchable
		var n int
		err = st.Read(ctx, func(tx *Tx) (err error) {
			if list, err = tx.IMAPSetAside(""); err != nil {
				return err
			}
			if _, err := tx.IMAPUnfetchable("support", "INBOX", 7, 43); !errors.Is(err, ErrNotFound) {
				t.Errorf("cleared record: %v, want ErrNotFound", err)
			}
			n, err = tx.CountIMAPSetAside()
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 || len(list) != 1 {
			t.Fatalf("set aside: count %d, list %+v", n, list)
		}
		if g := list[0]; g.UID != 42 || g.UIDValidity != 7 || g.MovedTo != "Deskmail/Failed" || g.SetAsideAt == nil || !g.SetAsideAt.Equal(t0.Add(3*time.Minute)) {
			t.Fatalf("set aside = %+v", g)
		}
		if err := st.Read(ctx, func(tx *Tx) (err error) { list, err = tx.IMAPSetAside("other"); return err }); err != nil || len(list) != 0 {
			t.Fatalf("another channel's: %v %v", list, err)
		}
	})
}
