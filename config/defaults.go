package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/deskmail/deskmail/internal/lazyregexp"
	"github.com/deskmail/deskmail/locale"
)

var customFieldName = lazyregexp.New(`^[a-z][a-z0-9_]{0,63}$`)

// BuiltinStatuses are Freshdesk's status codes.
var builtinStatuses = []StatusConfig{
	{Code: 2, Name: "Open", Category: "open"},
	{Code: 3, Name: "Pending", Category: "pending"},
	{Code: 4, Name: "Resolved", Category: "resolved"},
	{Code: 5, Name: "Closed", Category: "closed"},
}

// DefaultAddress is the support address of the default channel.
const DefaultAddress = "support@localhost"

// DefaultMaxMessageBytes is smtp.max_message_bytes when unset (36 MiB):
// room for a 20 MB attachment, which base64 makes ~27.4 MB.
const DefaultMaxMessageBytes = 36 << 20

// DefaultMaxMemory is smtp.max_memory when unset (384 MiB): with it,
// deskmail serve peaks under 512 MiB of RSS however much large mail
// arrives at once (README, "Memory").
const DefaultMaxMemory = 384 << 20

// DefaultMaxAttachmentBytes is max_attachment_bytes when unset (20 MiB).
const DefaultMaxAttachmentBytes = 20 << 20

func (c *Config) applyDefaults() {
	if c.Database == "" {
		c.Database = "deskmail.db"
	}
	if c.MaxAttachmentBytes == 0 {
		c.MaxAttachmentBytes = DefaultMaxAttachmentBytes
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	s := &c.SMTP
	if s.Listen == "" {
		s.Listen = "127.0.0.1:2525"
	}
	if s.Hostname == "" {
		s.Hostname, _ = os.Hostname()
		if s.Hostname == "" {
			s.Hostname = "localhost"
		}
	}
	if s.MaxMessageBytes == 0 {
		// A 20 MB attachment is ~27.4 MB in base64 with line breaks.
		s.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if s.MaxMemory == 0 {
		s.MaxMemory = DefaultMaxMemory
	}
	if s.MaxRecipients == 0 {
		s.MaxRecipients = 50
	}
	if s.MaxConnections == 0 {
		s.MaxConnections = 200
	}
	if s.MaxConnectionsPerIP == 0 {
		s.MaxConnectionsPerIP = 20
	}
	if s.ReadTimeout.Duration == 0 {
		s.ReadTimeout.Duration = time.Minute
	}
	if s.WriteTimeout.Duration == 0 {
		s.WriteTimeout.Duration = time.Minute
	}
	if s.MaxSession.Duration == 0 {
		// Room for a maximal message at ~0.5 Mbit/s; slow-loris
		// clients are cut off well before by min_data_rate.
		s.MaxSession.Duration = 10 * time.Minute
	}
	if s.AuthLockoutAfter == 0 {
		s.AuthLockoutAfter = 10
	}
	if s.AuthLockout.Duration == 0 {
		s.AuthLockout.Duration = 15 * time.Minute
	}
	if s.MinDataRate == 0 {
		s.MinDataRate = 256
	}
	if s.DataRateWindow.Duration == 0 {
		s.DataRateWindow.Duration = 30 * time.Second
	}
	if s.MaxLineLength == 0 {
		s.MaxLineLength = 4000
	}
	if s.MaxHeaders == 0 {
		s.MaxHeaders = 1000
	}
	if s.RatePerMinute == 0 {
		s.RatePerMinute = 600
	}
	if s.TrustedRelays == nil {
		s.TrustedRelays = append([]string(nil), DefaultTrustedRelays...)
	}
	if s.RelaySenderRatePerMinute == 0 {
		s.RelaySenderRatePerMinute = 6000
	}
	if c.HTTP.Listen == "" {
		c.HTTP.Listen = "127.0.0.1:8080"
	}
	if c.HTTP.SessionTimeout.Duration <= 0 {
		c.HTTP.SessionTimeout.Duration = 8 * time.Hour
	}
	if c.HTTP.TrustedProxies == nil {
		c.HTTP.TrustedProxies = append([]string(nil), DefaultTrustedProxies...)
	}
	if c.Threading.SubjectToken == "" {
		c.Threading.SubjectToken = "[#{id}]"
	}
	if c.Threading.TokenTTL.Duration == 0 {
		c.Threading.TokenTTL.Duration = 90 * 24 * time.Hour
	}
	if c.Threading.Hostname == "" {
		c.Threading.Hostname = "deskmail.local"
	}
	o := &c.Outbound
	if o.TLS == "" {
		o.TLS = "starttls"
	}
	if o.Connections == 0 {
		o.Connections = 4
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 12
	}
	if o.ConfirmationsPerHour == 0 {
		o.ConfirmationsPerHour = 5
	}
	for i := range o.DKIM {
		if len(o.DKIM[i].Headers) == 0 {
			o.DKIM[i].Headers = append([]string(nil), DefaultDKIMHeaders...)
		}
	}
	if len(c.Pipelines) == 0 {
		c.Pipelines = []PipelineConfig{{Name: "default"}}
	}
	for i := range c.Pipelines {
		p := &c.Pipelines[i]
		if len(p.Statuses) == 0 {
			p.Statuses = []int{2, 3, 4, 5}
			for _, s := range c.Statuses {
				p.Statuses = append(p.Statuses, s.Code)
			}
		}
		if p.NewStatus == 0 {
			p.NewStatus = 2
		}
		if p.CustomerReplyStatus == 0 {
			p.CustomerReplyStatus = 2
		}
		if p.AgentReplyStatus == "" {
			p.AgentReplyStatus = "3"
		}
		if p.ClosedReply == "" {
			p.ClosedReply = "new_ticket"
		}
	}
	if len(c.Channels) == 0 {
		c.Channels = []ChannelConfig{{Name: "default", Addresses: []string{DefaultAddress}}}
	}
	for i := range c.Channels {
		ch := &c.Channels[i]
		if ch.Pipeline == "" {
			ch.Pipeline = c.Pipelines[0].Name
		}
		if ch.Language == "" {
			ch.Language = "en"
		}
		if ch.DisplayName == "" {
			ch.DisplayName = "Support"
		}
		if ch.Send.NotifyWho == "" {
			ch.Send.NotifyWho = "all"
		}
		if r := ch.Relay; r != nil {
			if r.TLS == "" {
				r.TLS = "starttls"
			}
			if r.Connections == 0 {
				r.Connections = o.Connections
			}
		}
		if im := ch.IMAP; im != nil {
			if im.TLS == "" {
				im.TLS = "implicit"
			}
			if im.Port == 0 {
				im.Port = map[string]int{"implicit": 993, "starttls": 143, "none": 143}[im.TLS]
			}
			if len(im.Folders) == 0 {
				im.Folders = []string{"INBOX"}
			}
			if im.After == "" {
				im.After = "seen"
			}
			if im.After == "move" && im.MoveTo == "" {
				im.MoveTo = "deskmail/processed"
			}
			if im.FailedFolder == "" {
				im.FailedFolder = "deskmail/failed"
			}
			if im.PollInterval.Duration == 0 {
				im.PollInterval.Duration = time.Minute
			}
			if im.IDLE == nil {
				t := true
				im.IDLE = &t
			}
			if im.Existing == "" {
				im.Existing = "skip"
			}
			if im.BatchSize == 0 {
				im.BatchSize = 100
			}
			if im.SetAsideAttempts == 0 {
				im.SetAsideAttempts = 3
			}
			if im.SetAsideAfter.Duration == 0 {
				im.SetAsideAfter.Duration = 5 * time.Minute
			}
		}
	}
	for i := range c.CustomFields {
		if c.CustomFields[i].Type == "" {
			c.CustomFields[i].Type = "text"
		}
	}
	for i := range c.Agents {
		if c.Agents[i].Role == "" {
			c.Agents[i].Role = "agent"
		}
	}
}

// AllStatuses returns the built-in statuses followed by the custom ones.
func (c *Config) AllStatuses() []StatusConfig {
	out := append([]StatusConfig{}, builtinStatuses...)
	for _, s := range c.Statuses {
		replaced := false
		for i := range out {
			if out[i].Code == s.Code {
				out[i] = s
				replaced = true
			}
		}
		if !replaced {
			out = append(out, s)
		}
	}
	return out
}

// Validate checks everything a running daemon needs and returns every
// problem found.
func (c *Config) Validate() Problems {
	var ps Problems
	add := func(at loc, format string, args ...any) {
		ps = append(ps, Problem{File: c.fileName(), Line: at.line, Path: at.path, Msg: fmt.Sprintf(format, args...)})
	}
	if c.SMTP.MaxMemory < 0 {
		add(c.at("smtp", "max_memory"), "must be a number of bytes above 0 (default %d, 384 MiB)", DefaultMaxMemory)
	}
	if c.SMTP.AuthLockoutAfter < 0 {
		add(c.at("smtp", "auth_lockout_after"), "must be a number of failed attempts above 0 (default 10)")
	}
	if c.SMTP.AuthLockout.Duration < 0 {
		add(c.at("smtp", "auth_lockout"), "must be a positive duration (for example 15m)")
	}
	if c.SMTP.MinDataRate < -1 {
		add(c.at("smtp", "min_data_rate"), "must be bytes per second above 0, or -1 for no floor")
	}
	if c.SMTP.DataRateWindow.Duration < 0 {
		add(c.at("smtp", "data_rate_window"), "must be a positive duration (for example 30s)")
	}
	if c.MaxAttachmentBytes < 0 {
		add(c.at("max_attachment_bytes"), "must be a number of bytes above 0 (default %d, 20 MiB)", DefaultMaxAttachmentBytes)
	}
	categories := map[string]bool{"open": true, "pending": true, "resolved": true, "closed": true}
	codes := map[int]int{}
	for i, s := range c.Statuses {
		at := c.at("statuses", i)
		switch {
		case s.Code < 6:
			add(c.at("statuses", i, "code"), "status code %d is reserved (2 Open, 3 Pending, 4 Resolved, 5 Closed); custom statuses use codes 6 and above", s.Code)
		case codes[s.Code] > 0:
			add(c.at("statuses", i, "code"), "status code %d is also used at line %d; give each status its own code", s.Code, codes[s.Code])
		}
		codes[s.Code] = at.line
		if strings.TrimSpace(s.Name) == "" {
			add(c.at("statuses", i, "name"), "status %d has no name", s.Code)
		}
		if !categories[s.Category] {
			add(c.at("statuses", i, "category"), "%q is not a category; use open, pending, resolved or closed", s.Category)
		}
	}
	known := map[int]string{}
	var knownCodes []string
	for _, s := range c.AllStatuses() {
		known[s.Code] = s.Category
		knownCodes = append(knownCodes, strconv.Itoa(s.Code))
	}
	pipes := map[string]bool{}
	var pipeNames []string
	for i, p := range c.Pipelines {
		at := c.at("pipelines", i)
		if p.Name == "" {
			add(c.at("pipelines", i, "name"), "pipeline has no name")
		}
		if pipes[p.Name] {
			add(at, "pipeline %q is declared twice", p.Name)
		}
		pipes[p.Name] = true
		pipeNames = append(pipeNames, p.Name)
		hasClosed, inPipe := false, map[int]bool{}
		for j, code := range p.Statuses {
			if _, ok := known[code]; !ok {
				add(c.at("pipelines", i, "statuses", j), "status %d is not declared under statuses (known: %s)", code, strings.Join(knownCodes, ", "))
			}
			if known[code] == "closed" {
				hasClosed = true
			}
			inPipe[code] = true
		}
		if !hasClosed {
			add(c.at("pipelines", i, "statuses"), "no status of category closed; add 5 (Closed) or a custom closed status")
		}
		for _, f := range []struct {
			key  string
			code int
		}{{"new_status", p.NewStatus}, {"customer_reply_status", p.CustomerReplyStatus}} {
			if !inPipe[f.code] {
				add(c.at("pipelines", i, f.key), "status %d is not one of pipeline %q's statuses", f.code, p.Name)
			}
		}
		if p.AgentReplyStatus != "unchanged" {
			code, err := strconv.Atoi(p.AgentReplyStatus)
			if err != nil || !inPipe[code] {
				add(c.at("pipelines", i, "agent_reply_status"), "%q must be one of pipeline %q's status codes or \"unchanged\"", p.AgentReplyStatus, p.Name)
			}
		}
		switch p.ClosedReply {
		case "new_ticket", "reopen":
		case "reopen_within":
			if p.ReopenWithin.Duration <= 0 {
				add(c.at("pipelines", i, "closed_reply"), "reopen_within needs pipelines[%d].reopen_within (for example 72h)", i)
			}
		default:
			add(c.at("pipelines", i, "closed_reply"), "%q must be new_ticket, reopen or reopen_within", p.ClosedReply)
		}
		if p.CloseResolvedAfter.Duration < 0 {
			add(c.at("pipelines", i, "close_resolved_after"), "must not be negative (write 72h, or 0 to keep resolved tickets open to replies)")
		}
	}
	fields := map[string]bool{}
	reserved := map[string]bool{"status": true, "priority": true, "type": true, "group": true, "agent": true, "assign": true,
		"responder": true, "tags": true, "cc": true, "note": true, "action": true, "source": true, "requester": true}
	for i, f := range c.CustomFields {
		at := c.at("custom_fields", i, "name")
		switch {
		case !customFieldName.MatchString(f.Name):
			add(at, "custom field name %q must be lower-case letters, digits and _ (for example order_id)", f.Name)
		case reserved[f.Name]:
			add(at, "custom field name %q is a built-in command; choose another name", f.Name)
		case fields[f.Name]:
			add(at, "custom field %q is declared twice", f.Name)
		}
		fields[f.Name] = true
		switch f.Type {
		case "text", "number":
		case "choice":
			if len(f.Choices) == 0 {
				add(c.at("custom_fields", i, "choices"), "custom field %q of type choice needs choices", f.Name)
			}
		default:
			add(c.at("custom_fields", i, "type"), "%q must be text, number or choice", f.Type)
		}
	}
	agents := map[string]int{}
	for i, a := range c.Agents {
		at := c.at("agents", i, "email")
		addr, err := mail.ParseAddress(a.Email)
		if err != nil || addr.Address != a.Email {
			add(at, "%q is not a plain address (write alice@example.com)", a.Email)
		}
		if prev := agents[strings.ToLower(a.Email)]; prev > 0 {
			add(at, "agent %s is also declared at line %d", a.Email, prev)
		}
		agents[strings.ToLower(a.Email)] = at.line
		if a.Role != "agent" && a.Role != "admin" {
			add(c.at("agents", i, "role"), "%q must be agent or admin", a.Role)
		}
	}
	addrs := map[string]string{}
	names := map[string]bool{}
	for i, ch := range c.Channels {
		at := c.at("channels", i)
		if ch.Name == "" {
			add(c.at("channels", i, "name"), "channel has no name")
		}
		if names[ch.Name] {
			add(c.at("channels", i, "name"), "channel %q is declared twice", ch.Name)
		}
		names[ch.Name] = true
		if !pipes[ch.Pipeline] {
			msg := fmt.Sprintf("pipeline %q is not declared under pipelines", ch.Pipeline)
			if near := nearestName(ch.Pipeline, pipeNames); near != "" {
				msg += fmt.Sprintf("; did you mean %q?", near)
			}
			add(c.at("channels", i, "pipeline"), "%s", msg)
		}
		if len(ch.Addresses) == 0 {
			add(at, "channel %q has no addresses", ch.Name)
		}
		for j, a := range ch.Addresses {
			al := c.at("channels", i, "addresses", j)
			if !strings.Contains(a, "@") || strings.ContainsAny(a, " <>") {
				add(al, "%q is not a plain address (write support@example.com)", a)
			}
			key := strings.ToLower(a)
			if prev, ok := addrs[key]; ok {
				add(al, "address %s belongs to channel %q and channel %q; an address may belong to one channel only", a, prev, ch.Name)
			}
			addrs[key] = ch.Name
			if agents[key] > 0 {
				add(al, "address %s is both a support address and an agent (line %d); agents' mail would loop", a, agents[key])
			}
		}
		if !locale.Has(ch.Language) && !c.templatesFor(ch.Language) {
			add(c.at("channels", i, "language"), "%q has no templates: the built-in languages are %s; another needs a folder %s with its templates under outbound.templates_dir",
				ch.Language, strings.Join(locale.Builtin, ", "), ch.Language)
		}
		if im := ch.IMAP; im != nil {
			if im.Host == "" {
				add(c.at("channels", i, "imap", "host"), "missing: the IMAP server's host name")
			}
			switch im.TLS {
			case "implicit", "starttls":
			case "none":
				if !im.AllowInsecure && im.Host != "localhost" && im.Host != "127.0.0.1" && im.Host != "::1" {
					add(c.at("channels", i, "imap", "tls"), "none sends the password in clear; allowed only for loopback or with allow_insecure: true")
				}
			default:
				add(c.at("channels", i, "imap", "tls"), "%q must be implicit, starttls or none", im.TLS)
			}
			if im.Password.IsZero() && im.OAuth == nil {
				add(c.at("channels", i, "imap"), "needs a password or oauth")
			}
			switch im.After {
			case "seen", "move", "delete":
			default:
				add(c.at("channels", i, "imap", "after"), "%q must be seen, move or delete", im.After)
			}
			if im.Existing != "import" && im.Existing != "skip" {
				add(c.at("channels", i, "imap", "existing"), "%q must be import or skip", im.Existing)
			}
			if im.SetAsideAttempts < 1 {
				add(c.at("channels", i, "imap", "set_aside_attempts"), "%d must be at least 1", im.SetAsideAttempts)
			}
			if im.SetAsideAfter.Duration < 0 {
				add(c.at("channels", i, "imap", "set_aside_after"), "%s must not be negative", im.SetAsideAfter.Duration)
			}
		}
	}
	for _, key := range []string{"cert_file", "key_file"} {
		path := map[string]string{"cert_file": c.SMTP.CertFile, "key_file": c.SMTP.KeyFile}[key]
		if path == "" {
			continue
		}
		if _, err := os.ReadFile(path); err != nil {
			add(c.at("smtp", key), "cannot read %s: %v", path, unwrapPath(err))
		}
	}
	if (c.SMTP.CertFile == "") != (c.SMTP.KeyFile == "") {
		add(c.at("smtp"), "needs both cert_file and key_file for STARTTLS")
	}
	for i, r := range c.SMTP.TrustedRelays {
		if _, err := parseRelay(r); err != nil {
			add(c.at("smtp", "trusted_relays", i), "%v", err)
		}
	}
	if u := c.HTTP.PublicURL; u != "" {
		if err := checkPublicURL(u); err != nil {
			add(c.at("http", "public_url"), "%q %v", u, err)
		}
	}
	for i, r := range c.HTTP.TrustedProxies {
		if _, err := parseRelay(r); err != nil {
			add(c.at("http", "trusted_proxies", i), "%v", err)
		}
	}
	for role := range c.HTTP.RoleRateLimits {
		if role != "agent" && role != "admin" {
			add(c.at("http", "role_rate_limits", role), "unknown role %q (agent, admin)", role)
		}
	}
	if c.SMTP.TLSListen != "" && c.SMTP.CertFile == "" {
		add(c.at("smtp", "tls_listen"), "needs smtp.cert_file and smtp.key_file")
	}
	if !strings.Contains(c.Threading.SubjectToken, "{id}") {
		add(c.at("threading", "subject_token"), "%q must contain {id}", c.Threading.SubjectToken)
	}
	c.checkSecrets(add)
	c.validateOutbound(add)
	c.validateSLA(add)
	c.validateWebhooks(add)
	c.validateRules(add)
	if c.Log.Format != "text" && c.Log.Format != "json" {
		add(c.at("log", "format"), "%q must be text or json", c.Log.Format)
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		add(c.at("log", "level"), "%q must be debug, info, warn or error", c.Log.Level)
	}
	return ps.sorted()
}

// validateOutbound checks the relays (global and per channel) and the
// DKIM keys: a key that cannot be read or parsed is reported at its
// private_key_file line, not when the first mail is signed.
func (c *Config) validateOutbound(add func(at loc, format string, args ...any)) {
	checkRelay := func(key []any, addrKey, addr, mode string, conns int) {
		if addr != "" {
			if host, port, err := net.SplitHostPort(addr); err != nil || host == "" || port == "" {
				add(c.at(append(key, addrKey)...), "%q must be host:port (for example smtp.example.com:587)", addr)
			}
		}
		switch strings.ToLower(mode) {
		case "starttls", "implicit", "none":
		default:
			add(c.at(append(key, "tls")...), "%q must be starttls, implicit or none", mode)
		}
		if conns < 0 {
			add(c.at(append(key, "connections")...), "%d must be positive", conns)
		}
	}
	checkRelay([]any{"outbound"}, "relay", c.Outbound.Relay, c.Outbound.TLS, c.Outbound.Connections)
	for i, ch := range c.Channels {
		r := ch.Relay
		if r == nil {
			continue
		}
		key := []any{"channels", i, "relay"}
		if r.Address == "" {
			add(c.at(append(key, "address")...), "missing: the relay's host:port")
		}
		checkRelay(key, "address", r.Address, r.TLS, r.Connections)
		if r.Username != "" && r.Password.IsZero() {
			add(c.at(append(key, "username")...), "username %s needs a password", r.Username)
		}
	}
	domains := map[string]int{}
	for i, d := range c.Outbound.DKIM {
		key := []any{"outbound", "dkim", i}
		dom := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d.Domain), "."))
		switch {
		case dom == "" || strings.ContainsAny(dom, " @/"):
			add(c.at(append(key, "domain")...), "%q must be a domain name (example.com)", d.Domain)
		case domains[dom] > 0:
			add(c.at(append(key, "domain")...), "domain %s is also configured at line %d", dom, domains[dom])
		}
		domains[dom] = c.line(key...)
		if strings.TrimSpace(d.Selector) == "" || strings.ContainsAny(d.Selector, " @/") {
			add(c.at(append(key, "selector")...), "%q must be a DNS label (s2026)", d.Selector)
		}
		hasFrom := false
		for _, h := range d.Headers {
			if strings.EqualFold(strings.TrimSpace(h), "From") {
				hasFrom = true
			}
			if strings.TrimSpace(h) == "" || strings.ContainsAny(h, ": ") {
				add(c.at(append(key, "headers")...), "%q is not a header field name", h)
			}
		}
		if !hasFrom {
			add(c.at(append(key, "headers")...), "must include From (RFC 6376 §5.4)")
		}
		if d.PrivateKeyFile == "" {
			add(c.at(append(key, "private_key_file")...), "missing: the PEM file of the signing key")
		} else if _, err := d.LoadKey(); err != nil {
			add(c.at(append(key, "private_key_file")...), "%v", err)
		}
	}
}

// loc is where a problem is: its YAML key path and line.
type loc struct {
	path string
	line int
}

// at locates a key path (map keys as strings, sequence indexes as
// ints); the line is that of the nearest part of the path present in
// the file.
func (c *Config) at(path ...any) loc {
	return loc{path: pathString(path...), line: c.line(path...)}
}

// unwrapPath drops the "open NAME:" of an *fs.PathError when the
// message already names the file.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// nearestName is the name closest to a misspelt one ("" when none is
// close).
func nearestName(name string, names []string) string {
	fields := map[string]reflect.Type{}
	for _, n := range names {
		fields[n] = nil
	}
	return nearest(name, fields)
}

func (c *Config) fileName() string {
	if c.File == "" {
		return "(defaults)"
	}
	return c.File
}

// line finds the line of a key path (map keys as strings, sequence
// indexes as ints) in the parsed file, falling back to the nearest
// ancestor that exists; 0 when there is no file.
func (c *Config) line(path ...any) int {
	if c.root == nil || len(c.root.Content) == 0 {
		return 0
	}
	n := c.root.Content[0]
	best := 0
	for _, p := range path {
		var next *yaml.Node
		switch k := p.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return best
			}
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == k {
					best = n.Content[i].Line
					next = n.Content[i+1]
					break
				}
			}
		case int:
			if n.Kind != yaml.SequenceNode || k >= len(n.Content) {
				return best
			}
			next = n.Content[k]
			best = next.Line
		}
		if next == nil {
			return best
		}
		n = next
	}
	return best
}

// checkPublicURL requires an absolute http or https URL with a host
// and neither query nor fragment.
func checkPublicURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return errors.New("is not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("must start with https:// or http://")
	case u.Host == "" || u.User != nil:
		return errors.New("must name a host (https://help.example.com)")
	case u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(s, "?") || strings.HasSuffix(s, "#"):
		return errors.New("must not have a query or fragment")
	}
	return nil
}

// templatesFor reports whether outbound.templates_dir has a folder of
// templates for lang.
func (c *Config) templatesFor(lang string) bool {
	if c.Outbound.TemplatesDir == "" || lang == "" || strings.ContainsAny(lang, `/\.`) {
		return false
	}
	files, err := filepath.Glob(filepath.Join(c.Outbound.TemplatesDir, lang, "*.tmpl"))
	return err == nil && len(files) > 0
}
