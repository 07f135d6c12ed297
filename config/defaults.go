package config

import (
	"fmt"
	"net"
	"net/mail"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

var customFieldName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// BuiltinStatuses are Freshdesk's status codes.
var builtinStatuses = []StatusConfig{
	{Code: 2, Name: "Open", Category: "open"},
	{Code: 3, Name: "Pending", Category: "pending"},
	{Code: 4, Name: "Resolved", Category: "resolved"},
	{Code: 5, Name: "Closed", Category: "closed"},
}

// DefaultAddress is the support address of the default channel.
const DefaultAddress = "support@localhost"

func (c *Config) applyDefaults() {
	if c.Database == "" {
		c.Database = "deskmail.db"
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
		s.MaxMessageBytes = 25 << 20
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
		s.MaxSession.Duration = 30 * time.Minute
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
	if c.HTTP.Listen == "" {
		c.HTTP.Listen = "127.0.0.1:8080"
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
	add := func(line int, format string, args ...any) {
		ps = append(ps, Problem{File: c.fileName(), Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	categories := map[string]bool{"open": true, "pending": true, "resolved": true, "closed": true}
	codes := map[int]int{}
	for i, s := range c.Statuses {
		line := c.line("statuses", i)
		switch {
		case s.Code < 6:
			add(line, "status code %d is reserved (2 Open, 3 Pending, 4 Resolved, 5 Closed); custom statuses use codes 6 and above", s.Code)
		case codes[s.Code] > 0:
			add(line, "status code %d is also used at line %d; give each status its own code", s.Code, codes[s.Code])
		}
		codes[s.Code] = line
		if strings.TrimSpace(s.Name) == "" {
			add(line, "status %d has no name", s.Code)
		}
		if !categories[s.Category] {
			add(c.line("statuses", i, "category"), "status %d has category %q; use open, pending, resolved or closed", s.Code, s.Category)
		}
	}
	known := map[int]string{}
	for _, s := range c.AllStatuses() {
		known[s.Code] = s.Category
	}
	pipes := map[string]bool{}
	for i, p := range c.Pipelines {
		line := c.line("pipelines", i)
		if p.Name == "" {
			add(line, "pipeline has no name")
		}
		if pipes[p.Name] {
			add(line, "pipeline %q is declared twice", p.Name)
		}
		pipes[p.Name] = true
		hasClosed, inPipe := false, map[int]bool{}
		for _, code := range p.Statuses {
			if _, ok := known[code]; !ok {
				add(c.line("pipelines", i, "statuses"), "pipeline %q lists status %d, which is not declared under statuses", p.Name, code)
			}
			if known[code] == "closed" {
				hasClosed = true
			}
			inPipe[code] = true
		}
		if !hasClosed {
			add(c.line("pipelines", i, "statuses"), "pipeline %q has no status of category closed; add 5 (Closed) or a custom closed status", p.Name)
		}
		for _, f := range []struct {
			key  string
			code int
		}{{"new_status", p.NewStatus}, {"customer_reply_status", p.CustomerReplyStatus}} {
			if !inPipe[f.code] {
				add(c.line("pipelines", i, f.key), "pipeline %q: %s %d is not one of its statuses", p.Name, f.key, f.code)
			}
		}
		if p.AgentReplyStatus != "unchanged" {
			code, err := strconv.Atoi(p.AgentReplyStatus)
			if err != nil || !inPipe[code] {
				add(c.line("pipelines", i, "agent_reply_status"), "pipeline %q: agent_reply_status %q must be one of its status codes or \"unchanged\"", p.Name, p.AgentReplyStatus)
			}
		}
		switch p.ClosedReply {
		case "new_ticket", "reopen":
		case "reopen_within":
			if p.ReopenWithin.Duration <= 0 {
				add(c.line("pipelines", i, "closed_reply"), "pipeline %q: closed_reply reopen_within needs reopen_within (for example 72h)", p.Name)
			}
		default:
			add(c.line("pipelines", i, "closed_reply"), "pipeline %q: closed_reply %q must be new_ticket, reopen or reopen_within", p.Name, p.ClosedReply)
		}
	}
	fields := map[string]bool{}
	reserved := map[string]bool{"status": true, "priority": true, "type": true, "group": true, "agent": true, "assign": true,
		"responder": true, "tags": true, "cc": true, "note": true, "action": true, "source": true, "requester": true}
	for i, f := range c.CustomFields {
		line := c.line("custom_fields", i)
		switch {
		case !customFieldName.MatchString(f.Name):
			add(line, "custom field name %q must be lower-case letters, digits and _ (for example order_id)", f.Name)
		case reserved[f.Name]:
			add(line, "custom field name %q is a built-in command; choose another name", f.Name)
		case fields[f.Name]:
			add(line, "custom field %q is declared twice", f.Name)
		}
		fields[f.Name] = true
		switch f.Type {
		case "text", "number":
		case "choice":
			if len(f.Choices) == 0 {
				add(c.line("custom_fields", i, "choices"), "custom field %q of type choice needs choices", f.Name)
			}
		default:
			add(c.line("custom_fields", i, "type"), "custom field %q: type %q must be text, number or choice", f.Name, f.Type)
		}
	}
	agents := map[string]int{}
	for i, a := range c.Agents {
		line := c.line("agents", i)
		addr, err := mail.ParseAddress(a.Email)
		if err != nil || addr.Address != a.Email {
			add(line, "agent email %q is not a plain address", a.Email)
		}
		if prev := agents[strings.ToLower(a.Email)]; prev > 0 {
			add(line, "agent %s is also declared at line %d", a.Email, prev)
		}
		agents[strings.ToLower(a.Email)] = line
		if a.Role != "agent" && a.Role != "admin" {
			add(c.line("agents", i, "role"), "agent %s: role %q must be agent or admin", a.Email, a.Role)
		}
	}
	addrs := map[string]string{}
	names := map[string]bool{}
	for i, ch := range c.Channels {
		line := c.line("channels", i)
		if ch.Name == "" {
			add(line, "channel has no name")
		}
		if names[ch.Name] {
			add(line, "channel %q is declared twice", ch.Name)
		}
		names[ch.Name] = true
		if !pipes[ch.Pipeline] {
			add(c.line("channels", i, "pipeline"), "channel %q uses pipeline %q, which is not declared", ch.Name, ch.Pipeline)
		}
		if len(ch.Addresses) == 0 {
			add(line, "channel %q has no addresses", ch.Name)
		}
		for j, a := range ch.Addresses {
			al := c.line("channels", i, "addresses", j)
			if !strings.Contains(a, "@") || strings.ContainsAny(a, " <>") {
				add(al, "channel %q: %q is not a plain address (write support@example.com)", ch.Name, a)
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
		if ch.Language != "en" && ch.Language != "fr" {
			add(c.line("channels", i, "language"), "channel %q: language %q has no built-in templates (en, fr)", ch.Name, ch.Language)
		}
		if im := ch.IMAP; im != nil {
			il := c.line("channels", i, "imap")
			if im.Host == "" {
				add(il, "channel %q: imap.host is missing", ch.Name)
			}
			switch im.TLS {
			case "implicit", "starttls":
			case "none":
				if !im.AllowInsecure && im.Host != "localhost" && im.Host != "127.0.0.1" && im.Host != "::1" {
					add(c.line("channels", i, "imap", "tls"), "channel %q: tls none sends the password in clear; allowed only for loopback or with allow_insecure: true", ch.Name)
				}
			default:
				add(c.line("channels", i, "imap", "tls"), "channel %q: imap.tls %q must be implicit, starttls or none", ch.Name, im.TLS)
			}
			if im.Password.IsZero() && im.OAuth == nil {
				add(il, "channel %q: imap needs a password or oauth", ch.Name)
			}
			if !im.Password.IsZero() {
				if _, err := im.Password.Value(); err != nil {
					add(c.line("channels", i, "imap", "password"), "channel %q: imap password: %v", ch.Name, err)
				}
			}
			switch im.After {
			case "seen", "move", "delete":
			default:
				add(c.line("channels", i, "imap", "after"), "channel %q: imap.after %q must be seen, move or delete", ch.Name, im.After)
			}
			if im.Existing != "import" && im.Existing != "skip" {
				add(c.line("channels", i, "imap", "existing"), "channel %q: imap.existing %q must be import or skip", ch.Name, im.Existing)
			}
		}
	}
	for _, f := range []struct {
		key  []any
		path string
	}{{[]any{"smtp", "cert_file"}, c.SMTP.CertFile}, {[]any{"smtp", "key_file"}, c.SMTP.KeyFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.ReadFile(f.path); err != nil {
			add(c.line(f.key...), "cannot read %s: %v", f.path, err)
		}
	}
	if (c.SMTP.CertFile == "") != (c.SMTP.KeyFile == "") {
		add(c.line("smtp"), "smtp needs both cert_file and key_file for STARTTLS")
	}
	if c.SMTP.TLSListen != "" && c.SMTP.CertFile == "" {
		add(c.line("smtp", "tls_listen"), "smtp.tls_listen needs cert_file and key_file")
	}
	if !strings.Contains(c.Threading.SubjectToken, "{id}") {
		add(c.line("threading", "subject_token"), "threading.subject_token %q must contain {id}", c.Threading.SubjectToken)
	}
	if !c.Threading.Secret.IsZero() {
		if _, err := c.Threading.Secret.Value(); err != nil {
			add(c.line("threading", "secret"), "threading.secret: %v", err)
		}
	}
	if !c.Outbound.Password.IsZero() {
		if _, err := c.Outbound.Password.Value(); err != nil {
			add(c.line("outbound", "password"), "outbound.password: %v", err)
		}
	}
	c.validateOutbound(add)
	if c.Log.Format != "text" && c.Log.Format != "json" {
		add(c.line("log", "format"), "log.format %q must be text or json", c.Log.Format)
	}
	return ps
}

// validateOutbound checks the relays (global and per channel) and the
// DKIM keys: a key that cannot be read or parsed is reported at its
// private_key_file line, not when the first mail is signed.
func (c *Config) validateOutbound(add func(line int, format string, args ...any)) {
	checkRelay := func(what string, key []any, addr, mode string, conns int) {
		if addr != "" {
			if host, port, err := net.SplitHostPort(addr); err != nil || host == "" || port == "" {
				add(c.line(append(key, "relay")...), "%s: relay %q must be host:port (for example smtp.example.com:587)", what, addr)
			}
		}
		switch strings.ToLower(mode) {
		case "starttls", "implicit", "none":
		default:
			add(c.line(append(key, "tls")...), "%s: tls %q must be starttls, implicit or none", what, mode)
		}
		if conns < 0 {
			add(c.line(append(key, "connections")...), "%s: connections %d must be positive", what, conns)
		}
	}
	checkRelay("outbound", []any{"outbound"}, c.Outbound.Relay, c.Outbound.TLS, c.Outbound.Connections)
	for i, ch := range c.Channels {
		r := ch.Relay
		if r == nil {
			continue
		}
		key := []any{"channels", i, "relay"}
		what := fmt.Sprintf("channel %q relay", ch.Name)
		if r.Address == "" {
			add(c.line(key...), "%s: address (host:port) is missing", what)
		} else if host, port, err := net.SplitHostPort(r.Address); err != nil || host == "" || port == "" {
			add(c.line(append(key, "address")...), "%s: address %q must be host:port (for example smtp.example.com:587)", what, r.Address)
		}
		checkRelay(what, key, "", r.TLS, r.Connections)
		if r.Username != "" && r.Password.IsZero() {
			add(c.line(append(key, "username")...), "%s: username %s needs a password", what, r.Username)
		}
		if !r.Password.IsZero() {
			if _, err := r.Password.Value(); err != nil {
				add(c.line(append(key, "password")...), "%s: password: %v", what, err)
			}
		}
	}
	domains := map[string]int{}
	for i, d := range c.Outbound.DKIM {
		key := []any{"outbound", "dkim", i}
		dom := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d.Domain), "."))
		switch {
		case dom == "" || strings.ContainsAny(dom, " @/"):
			add(c.line(append(key, "domain")...), "outbound.dkim: domain %q must be a domain name (example.com)", d.Domain)
		case domains[dom] > 0:
			add(c.line(append(key, "domain")...), "outbound.dkim: domain %s is also configured at line %d", dom, domains[dom])
		}
		domains[dom] = c.line(key...)
		if strings.TrimSpace(d.Selector) == "" || strings.ContainsAny(d.Selector, " @/") {
			add(c.line(append(key, "selector")...), "outbound.dkim %s: selector %q must be a DNS label (s2026)", d.Domain, d.Selector)
		}
		hasFrom := false
		for _, h := range d.Headers {
			if strings.EqualFold(strings.TrimSpace(h), "From") {
				hasFrom = true
			}
			if strings.TrimSpace(h) == "" || strings.ContainsAny(h, ": ") {
				add(c.line(append(key, "headers")...), "outbound.dkim %s: %q is not a header field name", d.Domain, h)
			}
		}
		if !hasFrom {
			add(c.line(append(key, "headers")...), "outbound.dkim %s: headers must include From (RFC 6376 §5.4)", d.Domain)
		}
		if d.PrivateKeyFile == "" {
			add(c.line(key...), "outbound.dkim %s: private_key_file is missing", d.Domain)
		} else if _, err := d.LoadKey(); err != nil {
			add(c.line(append(key, "private_key_file")...), "outbound.dkim %s: %v", d.Domain, err)
		}
	}
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
