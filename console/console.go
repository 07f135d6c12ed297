package console

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/deskmail/deskmail/metrics"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/deskmail/deskmail/api"
	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// DefaultSessionTimeout ends a session unused for this long.
const DefaultSessionTimeout = 8 * time.Hour

// touchEvery: a session's last use is written at most this often.
const touchEvery = time.Minute

// Options configures the console.
type Options struct {
	// Store and Pipeline are required: the same the API uses.
	Store    *store.Store
	Pipeline *ingest.Pipeline
	// Config gives the channels (for the ops dashboard and filters)
	// and the agents' channel scopes (see api.ScopesFromConfig).
	Config *config.Config
	// Guard limits failed sign-ins together with failed API logins
	// (required to share the API's; a new one when nil).
	Guard *api.AuthGuard
	// TrustedProxies name the client address for Guard (see
	// api.ClientAddr).
	TrustedProxies []netip.Prefix
	// SessionTimeout ends a session unused for this long (default
	// DefaultSessionTimeout).
	SessionTimeout time.Duration
	// SecureCookies marks the session cookie Secure even on plain HTTP
	// requests (set when http.public_url is https: TLS ends at a
	// proxy). Requests that arrive over TLS always get Secure.
	SecureCookies bool
	// PasswordParams is the cost of the hash checked when an address
	// has no password, so that such a sign-in takes as long as a real
	// one (default DefaultPasswordParams(); the agents' own hashes carry
	// their parameters).
	PasswordParams PasswordParams
	// Logger receives one line per failed request (default: discard).
	Logger *slog.Logger
	// Metrics counts failed sign-ins (nil: not counted).
	Metrics *metrics.Metrics
	// Kick is called after a change that may have queued mail.
	Kick func()
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Console is the web console's http.Handler.
type Console struct {
	st      *store.Store
	p       *ingest.Pipeline
	cfg     *config.Config
	guard   *api.AuthGuard
	scopes  api.Scopes
	proxies []netip.Prefix
	timeout time.Duration
	secure  bool
	log     *slog.Logger
	metrics *metrics.Metrics
	kick    func()
	now     func() time.Time
	pages   map[string]*template.Template
	mux     *http.ServeMux
	// dummy is checked for an address without a password.
	dummy string
}

// New builds the console. It fails when Store or Pipeline is missing
// or a template does not parse.
func New(opts Options) (*Console, error) {
	if opts.Store == nil || opts.Pipeline == nil {
		return nil, errors.New("console: Store and Pipeline are required")
	}
	c := &Console{st: opts.Store, p: opts.Pipeline, cfg: opts.Config, guard: opts.Guard, proxies: opts.TrustedProxies,
		timeout: opts.SessionTimeout, secure: opts.SecureCookies, log: opts.Logger, metrics: opts.Metrics, kick: opts.Kick, now: opts.Now}
	if c.cfg == nil {
		c.cfg = config.Default()
	}
	if c.guard == nil {
		c.guard = api.NewAuthGuard(opts.Now, 0)
	}
	if c.timeout <= 0 {
		c.timeout = DefaultSessionTimeout
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.kick == nil {
		c.kick = func() {}
	}
	if c.now == nil {
		c.now = time.Now
	}
	params := opts.PasswordParams
	if params == (PasswordParams{}) {
		params = DefaultPasswordParams()
	}
	var err error
	// Not a hash of anything: deriving one cost every `deskmail serve`
	// an argon2id run at start.
	if c.dummy, err = dummyHash(params); err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	c.scopes = api.NewScopes(api.ScopesFromConfig(opts.Config))
	if err := c.parseTemplates(); err != nil {
		return nil, err
	}
	c.routes()
	return c, nil
}

// page is what every template gets.
type page struct {
	Lang    string
	Title   string
	Agent   *store.Agent
	CSRF    string
	Flash   string
	Error   string
	Path    string
	Content any
}

func (c *Console) parseTemplates() error {
	funcs := template.FuncMap{
		// the real functions need the page's language: see render.
		"t":     func(string) string { return "" },
		"tf":    func(string, ...any) string { return "" },
		"date":  func(any) string { return "" },
		"query": func(url.Values, ...string) string { return "" },
	}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return fmt.Errorf("console: templates: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return fmt.Errorf("console: templates: %w", err)
	}
	c.pages = map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return fmt.Errorf("console: template %s: %w", name, err)
		}
		c.pages[name] = t
	}
	return nil
}

// ServeHTTP implements http.Handler.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			c.log.Error("console: panic", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			http.Error(w, "internal error", http.StatusInternalServerError)
		}
	}()
	securityHeaders(w.Header())
	c.mux.ServeHTTP(w, r)
}

// csp is the Content-Security-Policy of every page: nothing but our
// own files, no inline script or style, no remote images, no framing.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
}

// handler is a page handler for a signed-in agent.
type handler func(w http.ResponseWriter, r *http.Request, s *store.Session)

func (c *Console) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix("/static/", http.FileServerFS(static))
	m.HandleFunc("GET /static/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	})
	m.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/tickets", http.StatusSeeOther)
	})
	m.HandleFunc("GET /login", c.loginPage)
	m.HandleFunc("POST /login", c.login)
	m.Handle("POST /logout", c.agent(c.logout, false))
	m.Handle("POST /language", c.agent(c.setLanguage, false))
	m.Handle("GET /tickets", c.agent(c.queue, false))
	m.Handle("GET /tickets/{id}", c.agent(c.ticket, false))
	m.Handle("POST /tickets/{id}/reply", c.agent(c.reply, false))
	m.Handle("POST /tickets/{id}/note", c.agent(c.note, false))
	m.Handle("POST /tickets/{id}/update", c.agent(c.update, false))
	m.Handle("GET /attachments/{id}", c.agent(c.attachment, false))
	m.Handle("GET /ops", c.agent(c.opsPage, true))
	m.Handle("POST /ops/outbox/{id}/retry", c.agent(c.outboxRetry, true))
	m.Handle("POST /ops/outbox/{id}/cancel", c.agent(c.outboxCancel, true))
	m.Handle("GET /ops/raw/{id}", c.agent(c.rawDownload, true))
	m.Handle("POST /ops/raw/{id}/reprocess", c.agent(c.rawReprocess, true))
	m.Handle("POST /ops/contacts/unflag", c.agent(c.unflag, true))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c.status(w, r, nil, http.StatusNotFound, "notfound")
	})
	c.mux = m
}

// cookie names. The login cookie carries the sign-in form's
// double-submit CSRF token.
const (
	sessionCookie = "deskmail_session"
	loginCookie   = "deskmail_login"
)

// agent wraps a handler: it loads the session (else redirects to the
// sign-in page, or answers 403 to a POST), checks the CSRF token of
// every POST and, with admin, the admin role.
func (c *Console) agent(h handler, admin bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := c.session(r)
		if errors.Is(err, store.ErrNotFound) {
			if r.Method != http.MethodGet {
				c.status(w, r, nil, http.StatusForbidden, "csrf")
				return
			}
			c.clearCookie(w, r, sessionCookie)
			to := "/login"
			if hasCookie(r, sessionCookie) {
				to += "?expired=1"
			}
			http.Redirect(w, r, to, http.StatusSeeOther)
			return
		}
		if err != nil {
			c.fail(w, r, nil, err)
			return
		}
		if r.Method != http.MethodGet {
			r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
			if !sameToken(r.PostFormValue("csrf"), s.CSRF) {
				c.status(w, r, s, http.StatusForbidden, "csrf")
				return
			}
		}
		if admin && s.Agent.Role != "admin" {
			c.status(w, r, s, http.StatusForbidden, "forbidden")
			return
		}
		h(w, r, s)
	})
}

func sameToken(got, want string) bool {
	return got != "" && want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func hasCookie(r *http.Request, name string) bool {
	_, err := r.Cookie(name)
	return err == nil
}

// session returns the request's live session, recording its use (at
// most once a minute); store.ErrNotFound when there is none.
func (c *Console) session(r *http.Request) (*store.Session, error) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" || len(ck.Value) > 100 {
		return nil, store.ErrNotFound
	}
	hash := store.HashKey(ck.Value)
	now := c.now()
	var s *store.Session
	err = c.st.Read(r.Context(), func(tx *store.Tx) error {
		var err error
		s, err = tx.SessionByToken(hash, now.Add(-c.timeout))
		return err
	})
	if err != nil {
		return nil, err
	}
	if now.Sub(s.LastSeenAt) >= touchEvery {
		err := c.st.Write(r.Context(), func(tx *store.Tx) error {
			tx.SetNow(now)
			return tx.TouchSession(hash)
		})
		if err != nil {
			c.log.Warn("console: recording a session's use failed", "err", err)
		}
	}
	return s, nil
}

// newToken returns 32 random bytes, URL-safe base64.
func newToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("console: random token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: c.secure || r.TLS != nil})
}

func (c *Console) clearCookie(w http.ResponseWriter, r *http.Request, name string) {
	c.setCookie(w, r, name, "", -1)
}

// render writes a page with the layout.
func (c *Console) render(w http.ResponseWriter, r *http.Request, s *store.Session, code int, name string, p page) {
	t, ok := c.pages[name]
	if !ok {
		c.fail(w, r, s, fmt.Errorf("console: no template %s", name))
		return
	}
	agentLang := ""
	if s != nil {
		p.Agent, p.CSRF, agentLang = &s.Agent, s.CSRF, s.Agent.Language
	}
	if p.Lang == "" {
		p.Lang = requestLanguage(r, agentLang)
	}
	p.Path = r.URL.Path
	if p.Flash == "" {
		// Only the console's own words: a link cannot put text of its
		// choosing in the notice.
		if f := r.URL.Query().Get("done"); messages["en"][f] != "" {
			p.Flash = translate(p.Lang, f)
		}
	}
	lang := p.Lang
	t, err := t.Clone()
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	t.Funcs(template.FuncMap{
		"t":     func(key string) string { return translate(lang, key) },
		"tf":    func(key string, args ...any) string { return fmt.Sprintf(translate(lang, key), args...) },
		"date":  func(v any) string { return formatTime(v) },
		"query": queryWith,
	})
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", p); err != nil {
		c.fail(w, r, s, fmt.Errorf("console: render %s: %w", name, err))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

// formatTime shows a time (or *time.Time) in UTC to the minute, "-"
// for none.
func formatTime(v any) string {
	switch t := v.(type) {
	case time.Time:
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	case *time.Time:
		if t == nil {
			return "-"
		}
		return formatTime(*t)
	}
	return "-"
}

// queryWith returns q with the given key/value pairs set ("" removes
// a key), encoded for a link.
func queryWith(q url.Values, kv ...string) string {
	out := url.Values{}
	for k, v := range q {
		out[k] = append([]string(nil), v...)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			out.Del(kv[i])
		} else {
			out.Set(kv[i], kv[i+1])
		}
	}
	return out.Encode()
}

// status answers with a short page saying what went wrong.
func (c *Console) status(w http.ResponseWriter, r *http.Request, s *store.Session, code int, key string) {
	lang := requestLanguage(r, "")
	if s != nil {
		lang = requestLanguage(r, s.Agent.Language)
	}
	c.render(w, r, s, code, "status", page{Lang: lang, Title: strconv.Itoa(code), Error: translate(lang, key)})
}

// fail answers an unexpected error: 404 for a missing row, 503 while
// the database cannot take writes or when the change conflicted with
// another instance's (store.ErrConflict), else 500. The error is logged,
// never shown.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *store.Session, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		c.status(w, r, s, http.StatusNotFound, "notfound")
		return
	case store.IsUnavailable(err):
		c.log.Warn("console: the database cannot take writes", "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", "30")
		http.Error(w, "The database cannot take writes right now. Retry in a moment.", http.StatusServiceUnavailable)
		return
	case errors.Is(err, store.ErrConflict):
		// Another instance's transaction held what this change needed
		// (PostgreSQL broke the deadlock): nothing was saved.
		c.log.Warn("console: the change conflicted with another transaction", "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", "1")
		http.Error(w, "Your change met another one made at the same moment and was not saved. Go back and send it again.", http.StatusServiceUnavailable)
		return
	}
	c.log.Error("console: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}

// redirect answers a POST with 303 to a page, with a flash message
// key.
func redirect(w http.ResponseWriter, r *http.Request, path, done string) {
	if done != "" {
		path += "?done=" + url.QueryEscape(done)
	}
	http.Redirect(w, r, path, http.StatusSeeOther)
}

func pathID(r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	return id, err == nil && id > 0
}
