package console

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/deskmail/deskmail/api"
	"github.com/deskmail/deskmail/store"
)

// loginForm is the sign-in page's content.
type loginForm struct {
	Email     string
	LoginCSRF string
}

// GET /login shows the sign-in form with a fresh double-submit token
// (cookie and hidden field), also to a browser that has a session: a
// session planted in it must not pass for the agent's own.
func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	p := page{}
	if r.URL.Query().Get("expired") != "" {
		p.Error = translate(requestLanguage(r, ""), "signin.expired")
	}
	c.showLogin(w, r, http.StatusOK, p, "")
}

func (c *Console) showLogin(w http.ResponseWriter, r *http.Request, code int, p page, email string) {
	tok, err := newToken()
	if err != nil {
		c.fail(w, r, nil, err)
		return
	}
	c.setCookie(w, r, loginCookie, tok, 3600)
	p.Content = loginForm{Email: email, LoginCSRF: tok}
	c.render(w, r, nil, code, "login", p)
}

// POST /login checks the password and starts a new session. Failures
// count in the API's AuthGuard (per client address and per account);
// a locked account or address gets 429 whatever the password.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	lang := requestLanguage(r, "")
	ck, err := r.Cookie(loginCookie)
	if err != nil || !sameToken(r.PostFormValue("csrf"), ck.Value) {
		c.status(w, r, nil, http.StatusForbidden, "csrf")
		return
	}
	email := strings.ToLower(strings.TrimSpace(r.PostFormValue("email")))
	password := r.PostFormValue("password")
	if len(email) > 320 {
		email = email[:320]
	}
	ip := api.ClientAddr(r, c.proxies)
	if retry, blocked := c.guard.SignInBlocked(ip, email); blocked {
		c.metrics.ConsoleSignInFailure("locked")
		c.locked(w, r, lang, email, retry)
		return
	}
	var agent *store.Agent
	var hash string
	err = c.st.Read(r.Context(), func(tx *store.Tx) error {
		var err error
		agent, hash, err = tx.AgentPassword(email)
		return err
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		c.fail(w, r, nil, err)
		return
	}
	ok := false
	if hash == "" {
		VerifyPassword(c.dummy, password) // as slow as a real check
	} else {
		ok = VerifyPassword(hash, password)
	}
	if !ok || agent == nil {
		v := c.guard.SignInFailed(ip, email)
		c.metrics.ConsoleSignInFailure("bad_password")
		c.log.Warn("console: failed sign-in", "client", ip, "account", email, "failures", v.Failures)
		if v.Locked {
			c.locked(w, r, lang, email, v.RetryAfter)
			return
		}
		api.Wait(r.Context(), v.Delay)
		c.showLogin(w, r, http.StatusUnauthorized, page{Error: translate(lang, "signin.failed")}, email)
		return
	}
	c.guard.SignInSucceeded(email)
	tok, err := newToken()
	if err != nil {
		c.fail(w, r, nil, err)
		return
	}
	csrf, err := newToken()
	if err != nil {
		c.fail(w, r, nil, err)
		return
	}
	now := c.now()
	err = c.st.Write(r.Context(), func(tx *store.Tx) error {
		tx.SetNow(now)
		if _, err := tx.DeleteIdleSessions(now.Add(-c.timeout)); err != nil {
			return err
		}
		// A session token the browser already had (planted or old) is
		// never adopted: it is ended, and a new one is issued.
		if old, err := r.Cookie(sessionCookie); err == nil && old.Value != "" {
			if err := tx.DeleteSession(store.HashKey(old.Value)); err != nil {
				return err
			}
		}
		return tx.CreateSession(&store.Session{TokenHash: store.HashKey(tok), Agent: *agent, CSRF: csrf, Client: ip})
	})
	if err != nil {
		c.fail(w, r, nil, err)
		return
	}
	c.log.Info("console: signed in", "agent", agent.Email, "client", ip)
	c.clearCookie(w, r, loginCookie)
	c.setCookie(w, r, sessionCookie, tok, 0)
	http.Redirect(w, r, "/tickets", http.StatusSeeOther)
}

func (c *Console) locked(w http.ResponseWriter, r *http.Request, lang, email string, retry int) {
	w.Header().Set("Retry-After", strconv.Itoa(retry))
	c.showLogin(w, r, http.StatusTooManyRequests, page{Error: tf(lang, "signin.locked", retry)}, email)
}

// POST /logout ends the session.
func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *store.Session) {
	err := c.st.Write(r.Context(), func(tx *store.Tx) error { return tx.DeleteSession(s.TokenHash) })
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.clearCookie(w, r, sessionCookie)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// POST /language stores the agent's language.
func (c *Console) setLanguage(w http.ResponseWriter, r *http.Request, s *store.Session) {
	lang := supported(r.PostFormValue("lang"))
	if lang == "" {
		c.status(w, r, s, http.StatusBadRequest, "invalid")
		return
	}
	err := c.st.Write(r.Context(), func(tx *store.Tx) error { return tx.SetAgentLanguage(s.Agent.ID, lang) })
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	back := r.PostFormValue("back")
	if !strings.HasPrefix(back, "/") || strings.HasPrefix(back, "//") || strings.ContainsAny(back, "\\\r\n") {
		back = "/tickets"
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}
