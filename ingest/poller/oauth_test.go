package poller

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/store"
)

// tokenEndpoint is a provider that rotates refresh tokens on every
// refresh and revokes the old one, as Microsoft's and many others do.
type tokenEndpoint struct {
	mu       sync.Mutex
	n        int
	valid    map[string]bool // refresh tokens
	access   map[string]bool
	received []string
	srv      *httptest.Server
}

func newTokenEndpoint(t *testing.T, first string) *tokenEndpoint {
	te := &tokenEndpoint{valid: map[string]bool{first: true}, access: map[string]bool{}}
	te.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil || r.Form.Get("grant_type") != "refresh_token" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		id, secret, ok := r.BasicAuth()
		if !ok {
			id, secret = r.Form.Get("client_id"), r.Form.Get("client_secret")
		}
		w.Header().Set("Content-Type", "application/json")
		if id != "deskmail" || secret != "client-secret" {
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client"})
			return
		}
		rt := r.Form.Get("refresh_token")
		te.mu.Lock()
		defer te.mu.Unlock()
		te.received = append(te.received, rt)
		if !te.valid[rt] {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
			return
		}
		delete(te.valid, rt) // rotation: the old one is revoked
		te.n++
		next, at := fmt.Sprintf("rt-%d", te.n+1), fmt.Sprintf("at-%d", te.n)
		te.valid[next], te.access[at] = true, true
		json.NewEncoder(w).Encode(map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": 3600, "refresh_token": next})
	}))
	t.Cleanup(te.srv.Close)
	return te
}

func (te *tokenEndpoint) validAccess(tok string) bool {
	te.mu.Lock()
	defer te.mu.Unlock()
	return te.access[tok]
}

func (te *tokenEndpoint) receivedTokens() []string {
	te.mu.Lock()
	defer te.mu.Unlock()
	return append([]string(nil), te.received...)
}

func oauthYAML(mech, url, refresh string) string {
	return "oauth:\n  mechanism: " + mech + "\n  token_url: " + url + "\n  client_id: deskmail\n  client_secret: client-secret\n" +
		"  refresh_token: " + refresh + "\n  scopes: [\"https://outlook.office.com/IMAP.AccessAsUser.All\", offline_access]"
}

func savedRefreshToken(t *testing.T, st *store.Store) string {
	t.Helper()
	var tok string
	err := st.Read(context.Background(), func(tx *store.Tx) (err error) {
		tok, err = tx.OAuthRefreshToken("support")
		return err
	})
	if err != nil {
		return ""
	}
	return tok
}

func TestOAuthRefreshAndRotation(t *testing.T) {
	for _, mech := range []string{"xoauth2", "oauthbearer"} {
		t.Run(mech, func(t *testing.T) {
			te := newTokenEndpoint(t, "rt-1")
			b := memServer(t, memOptions{tokens: te.validAccess})
			h := newHarness(t, b, oauthYAML(mech, te.srv.URL, "rt-1"))
			before := time.Now()
			h.start()
			eventually(t, 10*time.Second, "a successful poll with the access token", func() bool {
				hl := h.health()
				return hl != nil && hl.LastOKAt != nil
			})
			// The access token's expiry (expires_in 3600) is kept for
			// the ops views.
			if exp := h.health().OAuthExpiresAt; exp == nil || exp.Before(before.Add(59*time.Minute)) || exp.After(time.Now().Add(61*time.Minute)) {
				t.Errorf("oauth token expiry %v, want about an hour from now", exp)
			}
			b.appendMsg(t, "INBOX", message("oauth-1@example.net", "ivan@example.net", "OAuth mail"), time.Now())
			eventually(t, 10*time.Second, "a ticket", func() bool { return len(h.tickets()) == 1 })
			h.stop()
			if got := savedRefreshToken(t, h.st); got != "rt-2" {
				t.Fatalf("saved refresh token %q, want the rotated rt-2", got)
			}
			// Restart: the configured rt-1 is revoked by now; the
			// saved rt-2 must be the one used.
			h.start()
			eventually(t, 10*time.Second, "a second refresh", func() bool { return len(te.receivedTokens()) == 2 })
			eventually(t, 10*time.Second, "rt-3 saved", func() bool { return savedRefreshToken(t, h.st) == "rt-3" })
			h.stop()
			if got := te.receivedTokens(); got[0] != "rt-1" || got[1] != "rt-2" {
				t.Errorf("refresh tokens presented %q, want rt-1 then rt-2", got)
			}
			if hl := h.health(); hl.ConsecutiveFailures != 0 {
				t.Errorf("health after restart: %+v", hl)
			}
		})
	}
}

func TestOAuthRefusedShowsInHealth(t *testing.T) {
	te := newTokenEndpoint(t, "rt-1")
	b := memServer(t, memOptions{tokens: te.validAccess})
	h := newHarness(t, b, oauthYAML("xoauth2", te.srv.URL, "rt-revoked-secret"))
	h.start()
	eventually(t, 10*time.Second, "the refusal in channel health", func() bool {
		hl := h.health()
		return hl != nil && strings.Contains(hl.LastError, "invalid_grant")
	})
	h.stop()
	hl := h.health()
	t.Logf("health: %q", hl.LastError)
	if strings.Contains(hl.LastError, "rt-revoked-secret") || strings.Contains(hl.LastError, "client-secret") {
		t.Errorf("health shows a secret: %q", hl.LastError)
	}
}

// A bad access token from a token file: the server's refusal (the
// XOAUTH2 JSON challenge, then NO) shows in health.
func TestOAuthTokenFileAndCommand(t *testing.T) {
	te := newTokenEndpoint(t, "rt-1")
	te.access["file-token"] = true
	b := memServer(t, memOptions{tokens: te.validAccess})
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("file-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, b, "oauth:\n  mechanism: xoauth2\n  token_file: "+file)
	h.start()
	eventually(t, 10*time.Second, "login with the token file", func() bool {
		hl := h.health()
		return hl != nil && hl.LastOKAt != nil
	})
	h.stop()

	h2 := newHarness(t, b, "oauth:\n  mechanism: xoauth2\n  token_command: echo wrong-token")
	h2.start()
	eventually(t, 10*time.Second, "the refused token in health", func() bool {
		hl := h2.health()
		return hl != nil && strings.Contains(hl.LastError, "XOAUTH2") && strings.Contains(hl.LastError, "401")
	})
	h2.stop()
	t.Logf("health: %q", h2.health().LastError)
	if strings.Contains(h2.health().LastError, "wrong-token") {
		t.Errorf("health shows the token")
	}
}

// An operator re-authorizes a channel (new consent, new refresh token
// in the configuration): the configured token wins over the saved
// chain once, replaces it, and from then on its own rotations are used.
func TestOAuthReauthorize(t *testing.T) {
	te := newTokenEndpoint(t, "rt-1")
	b := memServer(t, memOptions{tokens: te.validAccess})
	h := newHarness(t, b, oauthYAML("xoauth2", te.srv.URL, "rt-1"))
	polled := func() bool {
		hl := h.health()
		return hl != nil && hl.LastOKAt != nil && hl.ConsecutiveFailures == 0
	}
	h.start()
	eventually(t, 10*time.Second, "rt-2 saved", func() bool { return savedRefreshToken(t, h.st) == "rt-2" })
	eventually(t, 10*time.Second, "a successful poll", polled)
	h.stop()

	// The operator re-consents: the provider issues a new grant (and
	// revokes the old chain) and the new token goes in the config.
	te.mu.Lock()
	te.valid = map[string]bool{"consent-2": true}
	te.mu.Unlock()
	h.cfg.Channels[0].IMAP.OAuth.RefreshToken = config.Secret{Inline: "consent-2"}
	h.start()
	eventually(t, 10*time.Second, "the rotation of the new token saved", func() bool { return savedRefreshToken(t, h.st) == "rt-3" })
	h.stop()

	// Same configuration again: the saved rotation wins now (consent-2
	// is revoked by its rotation).
	h.start()
	eventually(t, 10*time.Second, "rt-4 saved", func() bool { return savedRefreshToken(t, h.st) == "rt-4" })
	eventually(t, 10*time.Second, "a successful poll", polled)
	h.stop()
	if got, want := strings.Join(te.receivedTokens(), " "), "rt-1 consent-2 rt-3"; got != want {
		t.Errorf("refresh tokens presented %q, want %q", got, want)
	}
	var saved *store.SavedOAuthToken
	if err := h.st.Read(context.Background(), func(tx *store.Tx) (err error) { saved, err = tx.OAuthToken("support"); return err }); err != nil {
		t.Fatal(err)
	}
	if saved.ConfiguredSHA256 != tokenHash("consent-2") || strings.Contains(saved.ConfiguredSHA256, "consent") {
		t.Errorf("origin of the saved token = %q, want the hash of consent-2", saved.ConfiguredSHA256)
	}
}

// A token saved before origins were recorded keeps winning (it is
// taken to descend from the configured one), and its next rotation
// records the configured token as its origin.
func TestOAuthSavedWithoutOrigin(t *testing.T) {
	te := newTokenEndpoint(t, "rt-legacy")
	b := memServer(t, memOptions{tokens: te.validAccess})
	h := newHarness(t, b, oauthYAML("xoauth2", te.srv.URL, "rt-configured-long-ago"))
	if err := h.st.Write(context.Background(), func(tx *store.Tx) error { return tx.PutOAuthRefreshToken("support", "rt-legacy") }); err != nil {
		t.Fatal(err)
	}
	h.start()
	eventually(t, 10*time.Second, "rt-2 saved", func() bool { return savedRefreshToken(t, h.st) == "rt-2" })
	h.stop()
	if got := te.receivedTokens(); len(got) != 1 || got[0] != "rt-legacy" {
		t.Errorf("refresh tokens presented %q, want the saved rt-legacy", got)
	}
	var saved *store.SavedOAuthToken
	if err := h.st.Read(context.Background(), func(tx *store.Tx) (err error) { saved, err = tx.OAuthToken("support"); return err }); err != nil {
		t.Fatal(err)
	}
	if saved.ConfiguredSHA256 != tokenHash("rt-configured-long-ago") {
		t.Errorf("origin = %q, want the configured token's hash", saved.ConfiguredSHA256)
	}
}
