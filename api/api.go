package api

import (
	"context"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/metrics"
	"github.com/deskmail/deskmail/store"
)

// OpenAPI is the OpenAPI 3 description of every route (openapi.yaml),
// also served at GET /api/v2/openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte

// Default limits.
const (
	DefaultRateLimit  = 200
	MaxJSONBytes      = 5 << 20
	MaxMultipartBytes = 30 << 20
	maxPerPage        = 100
	defaultPerPage    = 30
)

// Options configures the API handler.
type Options struct {
	// Store is the database (required).
	Store *store.Store
	// Pipeline makes every change (required).
	Pipeline *ingest.Pipeline
	// Config gives groups for group_id and the agents' channel scopes
	// (optional; without it every agent sees every channel).
	Config *config.Config
	// Logger receives one line per failed request (default: discard).
	Logger *slog.Logger
	// RateLimit is the number of requests per key per minute (default
	// DefaultRateLimit; negative disables limiting).
	RateLimit int
	// RoleRateLimits overrides RateLimit per role ("agent", "admin").
	RoleRateLimits map[string]int
	// AgentChannels restricts agents (by lower-case address) to the
	// named channels; agents not listed, and admins, see every channel.
	// Nil means ScopesFromConfig(Config).
	AgentChannels map[string][]string
	// BaseURL is the public URL prefix of every absolute URL in a
	// response — Link headers, attachment_url, Location
	// ("https://help.example.com"); default: "http://" and the local
	// address the request arrived on. Never the request's Host header.
	BaseURL string
	// MaxJSONBytes and MaxMultipartBytes cap request bodies (defaults
	// MaxJSONBytes, MaxMultipartBytes).
	MaxJSONBytes      int64
	MaxMultipartBytes int64
	// TrustedProxies are the reverse proxies whose X-Forwarded-For
	// names the client for the failed-login limit (see clientAddr);
	// nil trusts none, so the limit counts the TCP peer.
	TrustedProxies []netip.Prefix
	// Guard limits failed logins (default: a new one on Now). The
	// daemon passes the same guard to every generation so a reload
	// lifts no lock.
	Guard *AuthGuard
	// Metrics counts failed logins and lockouts (optional).
	Metrics *metrics.Metrics
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Kick, when set, is called after every change that may have queued
	// mail (the outbox worker's Kick), so it goes out at once.
	Kick func()
}

// ScopesFromConfig returns the channels each agent with a group may
// see: the channels of that group and those without a group. Agents
// without a group are not listed (they see everything).
func ScopesFromConfig(cfg *config.Config) map[string][]string {
	out := map[string][]string{}
	if cfg == nil {
		return out
	}
	for _, a := range cfg.Agents {
		if a.Group == "" || a.Role == "admin" {
			continue
		}
		list := []string{}
		for _, ch := range cfg.Channels {
			if ch.Group == "" || ch.Group == a.Group {
				list = append(list, ch.Name)
			}
		}
		out[strings.ToLower(a.Email)] = list
	}
	return out
}

type server struct {
	st     *store.Store
	p      *ingest.Pipeline
	log    *slog.Logger
	now    func() time.Time
	kick   func()
	base   string
	scopes Scopes
	groups []string // group_id = index+1
	limits *limiter
	// guard limits failed logins per client address and key prefix.
	guard    *AuthGuard
	metrics  *metrics.Metrics
	rate     int
	roleRate map[string]int
	proxies  []netip.Prefix

	maxJSON, maxMultipart int64

	authMu    sync.Mutex
	authCache map[string]authEntry
}

type authEntry struct {
	agent   store.Agent
	expires time.Time
}

// authTTL is how long a verified key is remembered: a deactivated
// agent's key stops working within this time.
const authTTL = 10 * time.Second

type ctxKey struct{}

// route is one endpoint; the table drives registration and the
// OpenAPI sync test.
type route struct {
	method, path string
	admin        bool
	h            func(s *server, w http.ResponseWriter, r *http.Request, a *store.Agent)
}

func routes() []route {
	return []route{
		{"GET", "/api/v2/tickets", false, (*server).listTickets},
		{"POST", "/api/v2/tickets", false, (*server).createTicket},
		{"GET", "/api/v2/tickets/{id}", false, (*server).viewTicket},
		{"PUT", "/api/v2/tickets/{id}", false, (*server).updateTicket},
		{"DELETE", "/api/v2/tickets/{id}", true, (*server).deleteTicket},
		{"PUT", "/api/v2/tickets/{id}/restore", true, (*server).restoreTicket},
		{"GET", "/api/v2/tickets/{id}/conversations", false, (*server).listConversations},
		{"GET", "/api/v2/tickets/{id}/activities", false, (*server).listActivities},
		{"POST", "/api/v2/tickets/{id}/reply", false, (*server).reply},
		{"POST", "/api/v2/tickets/{id}/notes", false, (*server).addNote},
		{"PUT", "/api/v2/conversations/{id}", false, (*server).editConversation},
		{"DELETE", "/api/v2/conversations/{id}", true, (*server).deleteConversation},
		{"GET", "/api/v2/contacts", false, (*server).listContacts},
		{"GET", "/api/v2/contacts/{id}", false, (*server).viewContact},
		{"POST", "/api/v2/contacts", false, (*server).createContact},
		{"PUT", "/api/v2/contacts/{id}", true, (*server).updateContact},
		{"DELETE", "/api/v2/contacts/{id}", true, (*server).deleteContact},
		{"PUT", "/api/v2/contacts/{id}/restore", true, (*server).restoreContact},
		{"GET", "/api/v2/search/tickets", false, (*server).searchTickets},
		{"GET", "/api/v2/search/contacts", false, (*server).searchContacts},
		{"GET", "/api/v2/ticket_fields", false, (*server).ticketFields},
		{"GET", "/api/v2/attachments/{id}", false, (*server).attachment},
		{"GET", "/api/v2/agents/me", false, (*server).me},
		{"GET", "/api/v2/openapi.yaml", false, (*server).openapi},
	}
}

// New returns the API as an http.Handler serving /api/v2/…; mount it
// at the root of the HTTP listener (mux.Handle("/api/", h)). It fails
// when Store or Pipeline is missing.
func New(opts Options) (http.Handler, error) {
	if opts.Store == nil || opts.Pipeline == nil {
		return nil, errors.New("api: Store and Pipeline are required")
	}
	s := &server{
		st: opts.Store, p: opts.Pipeline, log: opts.Logger, now: opts.Now, kick: opts.Kick,
		base: strings.TrimRight(opts.BaseURL, "/"), rate: opts.RateLimit, roleRate: opts.RoleRateLimits,
		maxJSON: opts.MaxJSONBytes, maxMultipart: opts.MaxMultipartBytes, proxies: opts.TrustedProxies,
		metrics:   opts.Metrics,
		authCache: map[string]authEntry{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.kick == nil {
		s.kick = func() {}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rate == 0 {
		s.rate = DefaultRateLimit
	}
	if s.maxJSON <= 0 {
		s.maxJSON = MaxJSONBytes
	}
	if s.maxMultipart <= 0 {
		s.maxMultipart = MaxMultipartBytes
	}
	s.limits = newLimiter(s.now)
	s.guard = opts.Guard
	if s.guard == nil {
		s.guard = NewAuthGuard(s.now, 0)
	}
	scopes := opts.AgentChannels
	if scopes == nil {
		scopes = ScopesFromConfig(opts.Config)
	}
	s.scopes = NewScopes(scopes)
	if cfg := opts.Config; cfg != nil {
		seen := map[string]bool{}
		for _, a := range cfg.Agents {
			if a.Group != "" && !seen[a.Group] {
				seen[a.Group] = true
				s.groups = append(s.groups, a.Group)
			}
		}
		for _, c := range cfg.Channels {
			if c.Group != "" && !seen[c.Group] {
				seen[c.Group] = true
				s.groups = append(s.groups, c.Group)
			}
		}
		sort.Strings(s.groups)
	}

	mux := http.NewServeMux()
	allowed := map[string][]string{}
	for _, rt := range routes() {
		rt := rt
		allowed[rt.path] = append(allowed[rt.path], rt.method)
		mux.HandleFunc(rt.method+" "+rt.path, func(w http.ResponseWriter, r *http.Request) {
			a, _ := r.Context().Value(ctxKey{}).(*store.Agent)
			if rt.admin && a.Role != "admin" {
				forbidden(w)
				return
			}
			rt.h(s, w, r, a)
		})
	}
	for path, methods := range allowed {
		methods := methods
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			methodNotAllowed(w, r, methods)
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { notFound(w) })
	return s.middleware(mux), nil
}

// middleware recovers panics, authenticates the key and applies the
// rate limit before any route runs.
func (s *server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("api: panic", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				internalError(w)
			}
		}()
		w.Header().Set("X-Content-Type-Options", "nosniff")
		ip := clientAddr(r, s.proxies)
		if retry, blocked := s.guard.addressBlocked(ip); blocked {
			s.metrics.APILoginFailure("address_blocked")
			w.Header().Set("Retry-After", strconv.Itoa(retry))
			writeCode(w, http.StatusTooManyRequests, "rate_limit_exceeded",
				fmt.Sprintf("Too many failed logins from this address. Retry after %d seconds.", retry))
			return
		}
		key := credentials(r)
		var a *store.Agent
		err := store.ErrNotFound
		if key != "" {
			a, err = s.authenticate(r.Context(), key)
		}
		if errors.Is(err, store.ErrNotFound) {
			s.loginFailed(w, r, ip, key)
			return
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.guard.succeed(key)
		limit := s.rate
		if v, ok := s.roleRate[a.Role]; ok {
			limit = v
		}
		if limit > 0 {
			remaining, retry, ok := s.limits.take(store.HashKey(key), limit)
			h := w.Header()
			h.Set("X-RateLimit-Total", strconv.Itoa(limit))
			h.Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
			h.Set("X-RateLimit-Used-CurrentRequest", "1")
			if !ok {
				h.Set("Retry-After", strconv.Itoa(retry))
				writeCode(w, http.StatusTooManyRequests, "rate_limit_exceeded",
					fmt.Sprintf("You have exceeded the limit of %d requests per minute. Retry after %d seconds.", limit, retry))
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, a)))
	})
}

// loginFailed counts, logs and answers a missing or wrong key: 401,
// after the key prefix's delay, or 429 once the prefix is locked.
func (s *server) loginFailed(w http.ResponseWriter, r *http.Request, ip, key string) {
	reason := "bad_key"
	if key == "" {
		reason = "no_key"
	}
	v := s.guard.fail(ip, key)
	if v.locked && !v.lockedNow {
		reason = "key_locked"
	}
	s.metrics.APILoginFailure(reason)
	if key != "" && reason != "key_locked" {
		s.log.Warn("api: failed login", "client", ip, "key_prefix", prefixOf(key), "failures", v.failures, "delay", v.delay.String())
	}
	if v.addressLockedNow {
		s.metrics.APILoginLockout("address")
		s.log.Warn("api: client address blocked after failed logins", "client", ip, "failures", maxAuthFailures, "for", "the rest of the minute")
	}
	if v.lockedNow {
		s.metrics.APILoginLockout("key")
		s.log.Warn("api: key prefix locked after failed logins", "client", ip, "key_prefix", prefixOf(key), "failures", v.failures, "for", keyLockout.String())
	}
	if v.locked {
		w.Header().Set("Retry-After", strconv.Itoa(v.retryAfter))
		writeCode(w, http.StatusTooManyRequests, "rate_limit_exceeded",
			fmt.Sprintf("Too many failed logins with this key. Retry after %d seconds.", v.retryAfter))
		return
	}
	wait(r.Context(), v.delay)
	unauthorized(w)
}

// credentials returns the API key of a request: the user name of HTTP
// Basic (any password, "KEY:X" as Freshdesk does) or a Bearer token.
func credentials(r *http.Request) string {
	h := strings.TrimSpace(r.Header.Get("Authorization"))
	scheme, rest, _ := strings.Cut(h, " ")
	rest = strings.TrimSpace(rest)
	switch strings.ToLower(scheme) {
	case "bearer":
		return rest
	case "basic":
		raw, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return ""
		}
		user, _, _ := strings.Cut(string(raw), ":")
		return user
	}
	return ""
}

// authenticate returns the active agent owning key, from a short cache
// or the store.
func (s *server) authenticate(ctx context.Context, key string) (*store.Agent, error) {
	hash := store.HashKey(key)
	now := s.now()
	s.authMu.Lock()
	e, ok := s.authCache[hash]
	s.authMu.Unlock()
	if ok && now.Before(e.expires) {
		a := e.agent
		return &a, nil
	}
	var a *store.Agent
	err := s.st.Read(ctx, func(tx *store.Tx) error {
		var err error
		a, err = tx.AgentByAPIKey(key)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("api: authenticate: %w", err)
	}
	s.authMu.Lock()
	if len(s.authCache) > 10000 {
		for k, v := range s.authCache {
			if now.After(v.expires) {
				delete(s.authCache, k)
			}
		}
	}
	s.authCache[hash] = authEntry{agent: *a, expires: now.Add(authTTL)}
	s.authMu.Unlock()
	return a, nil
}

// fail answers an unexpected error: 404 for a missing row, 503 when
// the database cannot take writes (full, read-only, locked), when the
// change conflicted with another instance's (store.ErrConflict: retry
// after 1 s) or the client went away, else 500. The error is
// logged, never shown.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		notFound(w)
	case store.IsUnavailable(err):
		s.log.Warn("api: the database cannot take writes", "method", r.Method, "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", "30")
		writeCode(w, http.StatusServiceUnavailable, "service_unavailable",
			"The database cannot take writes right now (disk full, read-only or locked). Retry after 30 seconds.")
	case errors.Is(err, store.ErrConflict):
		// Another instance's transaction held what this one needed
		// (PostgreSQL broke the deadlock): nothing was changed.
		s.log.Warn("api: the change conflicted with another transaction", "method", r.Method, "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", "1")
		writeCode(w, http.StatusServiceUnavailable, "conflict_retry",
			"The change met another one made at the same moment and was not applied. Retry after 1 second.")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		writeCode(w, http.StatusServiceUnavailable, "unavailable", "The request was cancelled or timed out.")
	default:
		s.log.Error("api: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		internalError(w)
	}
}

// visible reports whether agent a may see tickets of channel ch.
func (s *server) visible(a *store.Agent, ch *string) bool { return s.scopes.Visible(a, ch) }

// Scopes is which channels each agent may see: the one rule the API
// and the web console both apply. The zero value scopes nobody.
type Scopes struct {
	m map[string]map[string]bool
}

// NewScopes builds Scopes from channel names per agent address (as
// ScopesFromConfig returns them).
func NewScopes(agentChannels map[string][]string) Scopes {
	m := map[string]map[string]bool{}
	for a, chans := range agentChannels {
		set := map[string]bool{}
		for _, c := range chans {
			set[c] = true
		}
		m[strings.ToLower(a)] = set
	}
	return Scopes{m: m}
}

// Visible reports whether agent a may see tickets of channel ch (nil:
// a ticket without a channel, which everyone sees). Admins and agents
// without a scope see every channel.
func (s Scopes) Visible(a *store.Agent, ch *string) bool {
	if a.Role == "admin" {
		return true
	}
	scope, ok := s.m[strings.ToLower(a.Email)]
	if !ok || ch == nil {
		return true
	}
	return scope[*ch]
}

// Channels lists the channels agent a may see, sorted; nil when the
// agent sees every channel.
func (s Scopes) Channels(a *store.Agent) []string {
	if !s.Scoped(a) {
		return nil
	}
	scope := s.m[strings.ToLower(a.Email)]
	out := make([]string, 0, len(scope))
	for ch := range scope {
		out = append(out, ch)
	}
	slices.Sort(out)
	return out
}

// Scoped reports whether agent a is limited to some channels.
func (s Scopes) Scoped(a *store.Agent) bool {
	_, ok := s.m[strings.ToLower(a.Email)]
	return ok && a.Role != "admin"
}

// baseURL is the public URL prefix for links: Options.BaseURL, else
// the address the connection was accepted on. The Host header is the
// client's to write, so it never appears in a response.
func (s *server) baseURL(r *http.Request) string {
	if s.base != "" {
		return s.base
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		return "http://" + a.String()
	}
	return "http://localhost"
}

func pathID(r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	return id, err == nil && id > 0
}

func (s *server) me(w http.ResponseWriter, r *http.Request, a *store.Agent) {
	writeJSON(w, http.StatusOK, agentJSON(a))
}

func (s *server) openapi(w http.ResponseWriter, r *http.Request, a *store.Agent) {
	w.Header().Set("Content-Type", "application/yaml")
	w.Write(OpenAPI)
}
