package console_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deskmail/deskmail/console"
	"github.com/deskmail/deskmail/store"
)

func TestPasswordHash(t *testing.T) {
	t.Parallel()
	h, err := console.HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q", h)
	}
	if !console.VerifyPassword(h, "correct horse battery") || console.VerifyPassword(h, "correct horse batterY") {
		t.Error("verify")
	}
	for _, bad := range []string{"", "$argon2id$", "$argon2i$v=19$m=1,t=1,p=1$AA$AA", "$argon2id$v=19$m=99999999,t=1,p=1$AA$AA"} {
		if console.VerifyPassword(bad, "x") {
			t.Errorf("malformed hash %q matched", bad)
		}
	}
	if _, err := console.HashPassword("short"); err == nil {
		t.Error("short password accepted")
	}
}

// TestSecurityHeaders: every answer, signed in or not, carries the
// strict CSP (no inline script, img-src 'self'), X-Frame-Options DENY,
// Referrer-Policy and nosniff; the session cookie is HttpOnly,
// SameSite=Strict, not Secure on plain HTTP.
func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	h := newHarness(t, hopts{})
	b := h.browser()
	check := func(what string, r response) {
		t.Helper()
		csp := r.hdr.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'self'", "script-src 'self'", "img-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", what, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: CSP %q allows inline code", what, csp)
		}
		if r.hdr.Get("X-Frame-Options") != "DENY" || r.hdr.Get("Referrer-Policy") == "" || r.hdr.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: headers %v", what, r.hdr)
		}
	}
	check("login page", b.get("/login"))
	check("redirect", b.get("/tickets"))
	check("not found", b.get("/nope"))
	css := b.get("/static/console.css")
	check("css", css)
	if css.code != 200 || !strings.HasPrefix(css.hdr.Get("Content-Type"), "text/css") {
		t.Errorf("css: %d %s", css.code, css.hdr.Get("Content-Type"))
	}
	r := b.signIn("alice@agents.test", password)
	check("sign-in", r)
	var cookie string
	for _, c := range r.hdr.Values("Set-Cookie") {
		if strings.HasPrefix(c, "deskmail_session=") {
			cookie = c
		}
	}
	if !strings.Contains(cookie, "HttpOnly") || !strings.Contains(cookie, "SameSite=Strict") || strings.Contains(cookie, "Secure") {
		t.Errorf("session cookie %q", cookie)
	}
	check("queue", b.get("/tickets"))
	if r := b.get("/tickets?done=Your+account+was+hacked"); strings.Contains(r.body, "hacked") {
		t.Error("a link writes the notice")
	}
	if r := b.get("/tickets?done=saved"); !strings.Contains(r.body, `class="flash"`) {
		t.Error("no notice for a known word")
	}
	if page := b.get("/tickets"); strings.Contains(page.body, "<script>") || strings.Contains(page.body, " style=") || strings.Contains(page.body, "onclick") {
		t.Error("page has inline script or style")
	}
}

// TestSecureCookieOverTLS: over TLS the session cookie is Secure.
func TestSecureCookieOverTLS(t *testing.T) {
	t.Parallel()
	h := newHarness(t, hopts{tls: true})
	b := h.browser()
	r := b.signIn("alice@agents.test", password)
	found := false
	for _, c := range r.hdr.Values("Set-Cookie") {
		if strings.HasPrefix(c, "deskmail_session=") {
			found = true
			if !strings.Contains(c, "; Secure") {
				t.Errorf("cookie over TLS not Secure: %q", c)
			}
		}
	}
	if !found {
		t.Fatalf("no session cookie: %d %v", r.code, r.hdr)
	}
}

// TestSignIn: a wrong password or unknown address gets 401 and no
// session; the right one a session; a session token stored in the
// database is only its hash.
func TestSignIn(t *testing.T) {
	t.Parallel()
	h := newHarness(t, hopts{})
	b := h.browser()
	if r := b.signIn("alice@agents.test", "wrong password!"); r.code != http.StatusUnauthorized || b.sessionCookie() != "" {
		t.Fatalf("wrong password: %d, cookie %q", r.code, b.sessionCookie())
	}
	if r := b.signIn("nobody@agents.test", password); r.code != http.StatusUnauthorized {
		t.Fatalf("unknown agent: %d", r.code)
	}
	if r := b.get("/tickets"); r.code != http.StatusSeeOther || r.hdr.Get("Location") != "/login" {
		t.Fatalf("queue before sign-in: %d %s", r.code, r.hdr.Get("Location"))
	}
	b.mustSignIn("ALICE@agents.test")
	tok := b.sessionCookie()
	if r := b.get("/tickets"); r.code != 200 || !strings.Contains(r.body, "alice@agents.test") {
		t.Fatalf("queue: %d\n%s", r.code, r.body)
	}
	var n int
	err := h.st.Read(h.ctx, func(tx *store.Tx) error {
		if _, err := tx.SessionByToken(tok, time.Time{}); err == nil {
			t.Error("the raw token is stored")
		}
		s, err := tx.SessionByToken(store.HashKey(tok), time.Time{})
		if err != nil {
			return err
		}
		if s.Agent.Email != "alice@agents.test" {
			t.Errorf("session agent %s", s.Agent.Email)
		}
		n = 1
		return nil
	})
	if err != nil || n != 1 {
		t.Fatal(err)
	}
	// Sign-out ends the session server-side: the old cookie is dead.
	page := b.get("/tickets")
	if r := b.post("/logout", url.Values{"csrf": {csrf(t, page.body)}}); r.code != http.StatusSeeOther {
		t.Fatalf("logout: %d", r.code)
	}
	b.setSessionCookie(tok)
	if r := b.get("/tickets"); r.code != http.StatusSeeOther {
		t.Fatalf("old session after sign-out: %d", r.code)
	}
}

// TestSessionFixation: a session id the browser had before signing in
// (planted by an attacker, or its own old one) is never the session
// after sign-in, and is ended.
func TestSessionFixation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, hopts{})
	attacker := h.browser()
	attacker.mustSignIn("carol@agents.test")
	planted := attacker.sessionCookie()

	victim := h.browser()
	victim.setSessionCookie(planted)
	victim.mustSignIn("alice@agents.test")
	if got := victim.sessionCookie(); got == planted || got == "" {
		t.Fatalf("session after sign-in %q (planted %q)", got, planted)
	}
	// The planted token signs nobody in now, let alone as alice.
	if r := attacker.get("/tickets"); r.code != http.StatusSeeOther {
		t.Fatalf("planted session still works: %d", r.code)
	}
	// A forged token that was never issued is not adopted either.
	v2 := h.browser()
	v2.setSessionCookie("forged-token-chosen-by-attacker")
	v2.mustSignIn("alice@agents.test")
	if v2.sessionCookie() == "forged-token-chosen-by-attacker" {
		t.Fatal("forged token adopted")
	}
}

// TestSessionExpiry: a session unused for the timeout ends (redirect
// to the sign-in page saying so); one used within it lives on.
func TestSessionExpiry(t *testing.T) {
	t.Parallel()
	h := newHarness(t, hopts{timeout: 30 * time.Minute})
	b := h.browser()
	b.mustSignIn("alice@agents.test")
	h.clock.advance(20 * time.Minute)
	if r := b.get("/tickets"); r.code != 200 {
		t.Fatalf("after 20 minutes: %d", r.code)
	}
	h.clock.advance(20 * time.Minute) // 20 minutes after the last use
	if r := b.get("/tickets"); r.code != 200 {
		t.Fatalf("20 minutes after the last use: %d", r.code)
	}
	h.clock.advance(31 * time.Minute)
	r := b.get("/tickets")
	if r.code != http.StatusSeeOther || r.hdr.Get("Location") != "/login?expired=1" {
		t.Fatalf("after inactivity: %d %s", r.code, r.hdr.Get("Location"))
	}
	if r := b.get("/login?expired=1"); !strings.Contains(r.body, "Your session ended") {
		t.Error("no expiry message")
	}
}

// TestDeactivationRevokesSessions: deactivating an agent ends its
// sessions at once; a new password ends the old sessions too.
func TestDeactivationRevokesSessions(t *testing.T) {
	t.Parallel()
	h := newHarness(t, hopts{})
	b := h.browser()
	b.mustSignIn("alice@agents.test")
	other := h.browser()
	other.mustSignIn("alice@agents.test")
	err := h.st.Write(h.ctx, func(tx *store.Tx) error {
		_, err := tx.SetAgentActive("alice@agents.test", false)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := b.get("/tickets"); r.code != http.StatusSeeOther {
		t.Fatalf("deactivated agent's session: %d", r.code)
	}
	if r := b.signIn("alice@agents.test", password); r.code != http.StatusUnauthorized {
		t.Fatalf("deactivated agent signs in: %d", r.code)
	}
	err = h.st.Write(h.ctx, func(tx *store.Tx) error {
		_, err := tx.SetAgentActive("alice@agents.test", true)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	b.mustSignIn("alice@agents.test")
	hash, _ := console.HashPasswordWith("another long password", cheap)
	if err := h.st.Write(h.ctx, func(tx *store.Tx) error { _, err := tx.SetAgentPassword("alice@agents.test", hash); return err }); err != nil {
		t.Fatal(err)
	}
	if r := b.get("/tickets"); r.code != http.StatusSeeOther {
		t.Fatalf("session after a password change: %d", r.code)
	}
}

// TestCSRF: a POST without the session's token, or with another
// session's, is refused with 403 and changes nothing; the sign-in form
// needs its double-submit token.
func TestCSRF(t *testing.T) {
	t.Parallel()
	h := newHarness(t, hopts{})
	id := h.mail("customer@example.com", "support@acme.test", "Printer broken", "")
	b := h.browser()
	b.mustSignIn("alice@agents.test")
	other := h.browser()
	other.mustSignIn("root@agents.test")
	otherToken := csrf(t, other.get("/tickets").body)
	path := "/tickets/" + strconv.FormatInt(id, 10)
	for name, form := range map[string]url.Values{
		"none":    {"body": {"hi"}},
		"empty":   {"body": {"hi"}, "csrf": {""}},
		"wrong":   {"body": {"hi"}, "csrf": {"AAAA"}},
		"another": {"body": {"hi"}, "csrf": {otherToken}},
	} {
		for _, action := range []string{"/reply", "/note", "/update"} {
			if r := b.post(path+action, form); r.code != http.StatusForbidden {
				t.Errorf("%s %s: %d", name, action, r.code)
			}
		}
	}
	if n := len(h.conversations(id)); n != 1 {
		t.Fatalf("conversations after refused posts: %d", n)
	}
	if r := b.post("/logout", url.Values{}); r.code != http.StatusForbidden || b.get("/tickets").code != 200 {
		t.Errorf("logout without token: %d", r.code)
	}
	// Without a session a POST is refused too (not redirected).
	anon := h.browser()
	if r := anon.post(path+"/reply", url.Values{"body": {"x"}}); r.code != http.StatusForbidden {
		t.Errorf("anonymous post: %d", r.code)
	}
	// The sign-in form: a token without its cookie, or none, is refused.
	if r := anon.post("/login", url.Values{"email": {"alice@agents.test"}, "password": {password}}); r.code != http.StatusForbidden {
		t.Errorf("sign-in without token: %d", r.code)
	}
	if r := anon.post("/login", url.Values{"csrf": {"guess"}, "email": {"alice@agents.test"}, "password": {password}}); r.code != http.StatusForbidden {
		t.Errorf("sign-in with a guessed token: %d", r.code)
	}
	// With the token, the same post works.
	tok := csrf(t, b.get(path).body)
	if r := b.post(path+"/note", url.Values{"csrf": {tok}, "body": {"checked the spooler"}}); r.code != http.StatusSeeOther {
		t.Fatalf("note with token: %d %s", r.code, r.body)
	}
	if n := len(h.conversations(id)); n != 2 {
		t.Fatalf("conversations after the note: %d", n)
	}
}

// TestSignInRateLimit: failed sign-ins count in the API's AuthGuard;
// the 10th failure locks the account for 15 minutes — then even the
// right password gets 429 — and the address's 30 failures a minute
// block it for any account; behind a trusted proxy the client is the
// X-Forwarded-For hop.
func TestSignInRateLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, hopts{trustLoopback: true})
	b := h.browser()
	xff := func(addr string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("X-Forwarded-For", addr) }
	}
	signIn := func(email, pw string, opts ...func(*http.Request)) response {
		page := b.get("/login")
		form := url.Values{"csrf": {csrf(t, page.body)}, "email": {email}, "password": {pw}}
		req, _ := http.NewRequest("POST", h.srv.URL+"/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for _, o := range opts {
			o(req)
		}
		return b.do(req)
	}
	for i := 1; i <= 10; i++ {
		r := signIn("alice@agents.test", "wrong password "+strconv.Itoa(i), xff("192.0.2.1"))
		want := http.StatusUnauthorized
		if i == 10 {
			want = http.StatusTooManyRequests
		}
		if r.code != want {
			t.Fatalf("failure %d: %d", i, r.code)
		}
	}
	r := signIn("alice@agents.test", password, xff("192.0.2.2"))
	if r.code != http.StatusTooManyRequests || r.hdr.Get("Retry-After") == "" {
		t.Fatalf("locked account with the right password: %d %v", r.code, r.hdr)
	}
	// Other accounts are not locked.
	if r := signIn("root@agents.test", password, xff("192.0.2.2")); r.code != http.StatusSeeOther {
		t.Fatalf("other account: %d", r.code)
	}
	h.clock.advance(16 * time.Minute)
	if r := signIn("alice@agents.test", password, xff("192.0.2.2")); r.code != http.StatusSeeOther {
		t.Fatalf("after the lock: %d", r.code)
	}
	// One address, many accounts: 30 failures block the address.
	for i := 0; i < 30; i++ {
		signIn(fmt.Sprintf("user%d@agents.test", i), "wrong", xff("198.51.100.7"))
	}
	if r := signIn("root@agents.test", password, xff("198.51.100.7")); r.code != http.StatusTooManyRequests {
		t.Fatalf("blocked address: %d", r.code)
	}
	if r := signIn("root@agents.test", password, xff("198.51.100.8")); r.code != http.StatusSeeOther {
		t.Fatalf("other address: %d", r.code)
	}
	// Every refusal is counted: 10 wrong passwords for alice and 30
	// for the many accounts; alice while locked, root while the
	// address was blocked.
	rec := httptest.NewRecorder()
	h.metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{
		`deskmail_console_signin_failures_total{reason="bad_password"} 40`,
		`deskmail_console_signin_failures_total{reason="locked"} 2`,
	} {
		if !strings.Contains(rec.Body.String(), want+"\n") {
			t.Errorf("metrics lack %s:\n%s", want, rec.Body.String())
		}
	}
}

// TestLanguage: the console follows the agent's stored language, else
// Accept-Language.
func TestLanguage(t *testing.T) {
	t.Parallel()
	h := newHarness(t, hopts{})
	b := h.browser()
	b.lang = "fr-FR,fr;q=0.9"
	if r := b.get("/login"); !strings.Contains(r.body, "Mot de passe") || !strings.Contains(r.body, `lang="fr"`) {
		t.Fatalf("French sign-in page:\n%s", r.body)
	}
	b.mustSignIn("alice@agents.test")
	if r := b.get("/tickets"); !strings.Contains(r.body, "Objet ou demandeur") {
		t.Fatal("queue not in French")
	}
	b.lang = "en"
	page := b.get("/tickets")
	if r := b.post("/language", url.Values{"csrf": {csrf(t, page.body)}, "lang": {"fr"}, "back": {"/tickets"}}); r.code != http.StatusSeeOther {
		t.Fatalf("language: %d", r.code)
	}
	if r := b.get("/tickets"); !strings.Contains(r.body, "Se déconnecter") {
		t.Fatal("the agent's language does not win over Accept-Language")
	}
}
