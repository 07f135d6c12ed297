// Package config reads deskmail's YAML configuration file, fills in
// defaults and validates it. Every problem is reported with the file,
// line and YAML key path it comes from
// ("deskmail.yaml:12: smtp.listen: ..."), all at once, sorted by line.
//
// The keys are the yaml tags of the structs below and nothing else: a
// field added with a yaml tag is known to the checker (unknown-key,
// duplicate-key and type checks, "did you mean"), a Secret field
// anywhere is resolved by the checker, and a field of type
// []netip.Prefix gets its CIDRs checked — see check.go. Semantic rules
// (one field against another) go in Validate, reported with
// add(c.at("section", i, "key"), ...).
//
// The zero configuration (Default) is what `deskmail serve` runs on
// when no file is given: SQLite in the current directory, SMTP on
// 127.0.0.1:2525, one channel for support@localhost.
package config

import (
	"bytes"
	"cmp"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole configuration.
type Config struct {
	// Database is the SQLite file (default deskmail.db), or a
	// PostgreSQL URL (postgres://user@host:5432/db?sslmode=…) for
	// several instances sharing one database.
	Database string `yaml:"database"`
	// DatabasePassword is the PostgreSQL password when the URL has
	// none ("file:/run/secrets/pg", "env:NAME"); PGPASSWORD and
	// PGPASSFILE work too.
	DatabasePassword Secret `yaml:"database_password"`
	// MaxAttachmentBytes is the largest attachment (decoded) stored
	// as a file of its conversation (default 20 MiB, Zoho Desk's
	// limit); a larger one is kept only inside the raw message and a
	// warning says so. It applies to every source (SMTP, IMAP, pipe).
	MaxAttachmentBytes int64           `yaml:"max_attachment_bytes"`
	Log                LogConfig       `yaml:"log"`
	SMTP               SMTPConfig      `yaml:"smtp"`
	HTTP               HTTPConfig      `yaml:"http"`
	Threading          ThreadingConfig `yaml:"threading"`
	Outbound           OutboundConfig  `yaml:"outbound"`
	// CustomFields are extra ticket fields agents set by email command
	// ("order_id":"A-123") or through the API.
	CustomFields []CustomFieldConfig `yaml:"custom_fields"`
	Statuses     []StatusConfig      `yaml:"statuses"`
	Pipelines    []PipelineConfig    `yaml:"pipelines"`
	Agents       []AgentConfig       `yaml:"agents"`
	Channels     []ChannelConfig     `yaml:"channels"`
	// SLA sets first-response and resolution targets (see sla.go).
	SLA SLAConfig `yaml:"sla"`
	// Webhooks are HTTP endpoints told about ticket events.
	Webhooks []WebhookConfig `yaml:"webhooks"`
	// Rules change tickets on events (see rules.go and the rules
	// package).
	Rules []RuleConfig `yaml:"rules"`

	// File is the path the configuration was read from ("" for
	// defaults).
	File string `yaml:"-"`
	root *yaml.Node
}

// LogConfig chooses the log format and level.
type LogConfig struct {
	Format string `yaml:"format"` // text or json
	Level  string `yaml:"level"`  // debug, info, warn, error
}

// SMTPConfig configures the SMTP receiver.
type SMTPConfig struct {
	Listen          string `yaml:"listen"`
	TLSListen       string `yaml:"tls_listen"`
	Hostname        string `yaml:"hostname"`
	CertFile        string `yaml:"cert_file"`
	KeyFile         string `yaml:"key_file"`
	MaxMessageBytes int64  `yaml:"max_message_bytes"`
	// MaxMemory bounds the memory the messages being received and
	// stored take together, counted as six times their raw size
	// (default 384 MiB; the receiver raises it to six times
	// MaxMessageBytes if it is less, so that one maximal message
	// fits). Mail beyond it waits (with SIZE), or gets 452 4.3.1 and
	// is retried by its sender. deskmail serve's peak RSS stays under
	// MaxMemory + 128 MiB.
	MaxMemory           int64    `yaml:"max_memory"`
	MaxRecipients       int      `yaml:"max_recipients"`
	MaxConnections      int      `yaml:"max_connections"`
	MaxConnectionsPerIP int      `yaml:"max_connections_per_ip"`
	ReadTimeout         Duration `yaml:"read_timeout"`
	WriteTimeout        Duration `yaml:"write_timeout"`
	MaxSession          Duration `yaml:"max_session"`
	// MinDataRate is the slowest a client may send, in bytes per
	// second averaged over DataRateWindow of the time the receiver
	// waits for it (commands and DATA alike; time spent answering is
	// not counted). A slower client gets 421 4.4.2 and is closed. It
	// applies to trusted relays too. Default 256; -1 turns it off.
	MinDataRate int `yaml:"min_data_rate"`
	// DataRateWindow is the span MinDataRate is averaged over
	// (default 30s).
	DataRateWindow Duration `yaml:"data_rate_window"`
	MaxLineLength  int      `yaml:"max_line_length"`
	MaxHeaders     int      `yaml:"max_headers"`
	// RatePerMinute limits messages per client IP and per sender.
	RatePerMinute int `yaml:"rate_per_minute"`
	// TrustedRelays are the MTAs in front of deskmail, as CIDRs or
	// single addresses (default: the loopback ranges 127.0.0.0/8 and
	// ::1/128; an empty list trusts no one). Connections from them
	// are exempt from max_connections_per_ip and the per-address
	// rate_per_minute: the MTA has applied its own policy and carries
	// the whole site's mail. max_connections still applies.
	TrustedRelays []string `yaml:"trusted_relays"`
	// RelaySenderRatePerMinute limits messages per envelope sender for
	// mail arriving from a trusted relay (default 6000: a burst of
	// 6,000 and 100 a second sustained from one address).
	RelaySenderRatePerMinute int `yaml:"relay_sender_rate_per_minute"`
	// Auth enables SMTP AUTH (PLAIN/LOGIN over TLS only) for the
	// users below.
	Auth  bool       `yaml:"auth"`
	Users []SMTPUser `yaml:"users"`
	// AuthLockoutAfter is how many failed AUTH attempts lock a user
	// name (counted from every address) or a client address (counted
	// over every user name) for AuthLockout (default 10). Each failure
	// after the first delays the next answer exponentially.
	AuthLockoutAfter int `yaml:"auth_lockout_after"`
	// AuthLockout is how long such a lock lasts (default 15m); a
	// correct password from a trusted relay lifts a user's lock early.
	AuthLockout Duration `yaml:"auth_lockout"`
	// Disabled turns the receiver off.
	Disabled bool `yaml:"disabled"`
}

// DefaultTrustedRelays are the relays trusted when smtp.trusted_relays
// is not set: an MTA on the same host.
var DefaultTrustedRelays = []string{"127.0.0.0/8", "::1/128"}

// TrustedRelayPrefixes parses TrustedRelays: each entry is a CIDR or a
// single IP address (a /32 or /128).
func (s SMTPConfig) TrustedRelayPrefixes() ([]netip.Prefix, error) {
	return parsePrefixes(s.TrustedRelays)
}

// parsePrefixes parses a list of CIDRs or single addresses.
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, r := range list {
		p, err := parseRelay(r)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func parseRelay(r string) (netip.Prefix, error) {
	r = strings.TrimSpace(r)
	if strings.Contains(r, "/") {
		p, err := netip.ParsePrefix(r)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR (for example 10.0.0.0/24 or 2001:db8::/64)", r)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(r)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR (for example 10.0.0.5 or 10.0.0.0/24)", r)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// SMTPUser is an account that may authenticate to the receiver; when
// it names an agent, AUTH proves that agent's identity for commands.
type SMTPUser struct {
	Username string `yaml:"username"`
	Password Secret `yaml:"password"`
	Agent    string `yaml:"agent"`
}

// HTTPConfig configures the HTTP listener (API, health, metrics).
type HTTPConfig struct {
	Listen string `yaml:"listen"`
	// PublicURL is the URL clients reach the API at
	// ("https://help.example.com"): every absolute URL in an API
	// response (attachment_url, Link, Location) starts with it.
	// Default: "http://" and the local address a request arrived on
	// (the listen address). The request's Host header is never used.
	PublicURL string `yaml:"public_url"`
	// TrustedProxies are the reverse proxies in front of the API
	// (nginx, Caddy), as CIDRs or single addresses (default: the
	// loopback ranges 127.0.0.0/8 and ::1/128; an empty list trusts no
	// one). For a request whose peer is one of them, the client is the
	// rightmost X-Forwarded-For hop that is not a trusted proxy, and
	// the failed-login limit counts that address; X-Forwarded-For from
	// any other peer is ignored.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// RateLimit is the number of API requests each key may make per
	// minute (0: the API's default, 200; negative: no limit), and
	// RoleRateLimits overrides it per role ("agent", "admin").
	RateLimit      int            `yaml:"rate_limit"`
	RoleRateLimits map[string]int `yaml:"role_rate_limits"`
	// SessionTimeout ends a web console session unused for this long
	// (default 8h).
	SessionTimeout Duration `yaml:"session_timeout"`
}

// DefaultTrustedProxies are the proxies trusted when
// http.trusted_proxies is not set: a proxy on the same host.
var DefaultTrustedProxies = []string{"127.0.0.0/8", "::1/128"}

// TrustedProxyPrefixes parses TrustedProxies: each entry is a CIDR or
// a single IP address (a /32 or /128).
func (h HTTPConfig) TrustedProxyPrefixes() ([]netip.Prefix, error) {
	return parsePrefixes(h.TrustedProxies)
}

// ThreadingConfig configures how mail finds its ticket.
type ThreadingConfig struct {
	// SubjectToken is the ticket token format in subjects; {id} is the
	// ticket number. Default "[#{id}]".
	SubjectToken string `yaml:"subject_token"`
	// Secret signs reply-address tokens and our Message-IDs.
	Secret Secret `yaml:"secret"`
	// TokenTTL bounds how long a reply-address token stays valid for
	// agent commands (default 90 days; 0 keeps the default).
	TokenTTL Duration `yaml:"token_ttl"`
	// NoReplySenders are senders whose Reply-To names the real
	// requester (web forms, relays). Patterns may start with "*@".
	NoReplySenders []string `yaml:"noreply_senders"`
	// TrustedAuthServers are the authserv-ids whose
	// Authentication-Results headers are believed.
	TrustedAuthServers []string `yaml:"trusted_auth_servers"`
	// Hostname is the right-hand side of our Message-IDs.
	Hostname string `yaml:"hostname"`
}

// OutboundConfig configures the relay used for outbound mail.
type OutboundConfig struct {
	Relay        string `yaml:"relay"` // host:port; empty keeps mail queued
	TLS          string `yaml:"tls"`   // starttls, implicit, none
	Username     string `yaml:"username"`
	Password     Secret `yaml:"password"`
	Connections  int    `yaml:"connections"`
	MaxAttempts  int    `yaml:"max_attempts"`
	TemplatesDir string `yaml:"templates_dir"`
	// ConfirmationsPerHour limits confirmations to one sender.
	ConfirmationsPerHour int `yaml:"confirmations_per_hour"`
	// RetryFor is how long temporary failures are retried before a
	// mail is given up as failed (default 48h; MaxAttempts also
	// applies, whichever comes first).
	RetryFor Duration `yaml:"retry_for"`
	// DKIM signs outbound mail, one entry per signing domain. A mail
	// is signed with the entry for its From domain (or the nearest
	// parent domain), else for its envelope sender's domain, else not
	// at all.
	DKIM []DKIMConfig `yaml:"dkim"`
	// VERP gives each outbound mail its own signed envelope sender
	// (support+b<outbox id>.<mac>@domain), so that a bounce proves
	// which mail it answers (default true). Turn it off for a relay
	// that refuses or rewrites such senders; bounces are then matched
	// by our Message-ID and the report's Final-Recipient only.
	VERP *bool `yaml:"verp"`
}

// VERPEnabled reports whether outbound mail gets a signed envelope
// sender (outbound.verp, default true).
func (o OutboundConfig) VERPEnabled() bool { return o.VERP == nil || *o.VERP }

// DKIMConfig is one DKIM signing domain (RFC 6376).
type DKIMConfig struct {
	// Domain is the signing domain (d=).
	Domain string `yaml:"domain"`
	// Selector names the key under <selector>._domainkey.<domain>.
	Selector string `yaml:"selector"`
	// PrivateKeyFile is a PEM file holding an RSA (PKCS #1 or #8, at
	// least 1024 bits) or Ed25519 (PKCS #8) private key.
	PrivateKeyFile string `yaml:"private_key_file"`
	// Headers are the header fields signed (default
	// DefaultDKIMHeaders); From is required.
	Headers []string `yaml:"headers"`
}

// DefaultDKIMHeaders are the header fields signed when a DKIM entry
// names none: those a reader sees or a client threads on (RFC 6376
// §5.4.1). Listed fields absent from a mail are still named in h=, so
// that adding them later breaks the signature.
var DefaultDKIMHeaders = []string{"From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
	"Reply-To", "MIME-Version", "Content-Type"}

// LoadKey reads and parses the private key. Errors name the file,
// never the key.
func (d DKIMConfig) LoadKey() (crypto.Signer, error) {
	data, err := os.ReadFile(d.PrivateKeyFile)
	if err != nil {
		return nil, fmt.Errorf("cannot read dkim key %s: %w", d.PrivateKeyFile, unwrapPath(err))
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("dkim key %s: no PEM block (write the key as -----BEGIN PRIVATE KEY-----)", d.PrivateKeyFile)
	}
	var key any
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("dkim key %s: PEM block %q is not an RSA or Ed25519 private key", d.PrivateKeyFile, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("dkim key %s: %w", d.PrivateKeyFile, err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		// RFC 8301 §3.2: verifiers must not accept keys under 1024 bits.
		if k.N.BitLen() < 1024 {
			return nil, fmt.Errorf("dkim key %s: RSA key of %d bits; DKIM needs at least 1024 (2048 recommended)", d.PrivateKeyFile, k.N.BitLen())
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		return nil, fmt.Errorf("dkim key %s: ECDSA keys cannot sign DKIM (use RSA or Ed25519)", d.PrivateKeyFile)
	default:
		return nil, fmt.Errorf("dkim key %s: this kind of key cannot sign DKIM (use RSA or Ed25519)", d.PrivateKeyFile)
	}
}

// RelayConfig is an SMTP relay a channel sends its mail through
// instead of outbound.relay.
type RelayConfig struct {
	// Address is host:port.
	Address  string `yaml:"address"`
	TLS      string `yaml:"tls"` // starttls (default), implicit, none
	Username string `yaml:"username"`
	Password Secret `yaml:"password"`
	// Connections is the size of this relay's connection pool
	// (default outbound.connections).
	Connections int `yaml:"connections"`
}

// CustomFieldConfig declares a custom ticket field.
type CustomFieldConfig struct {
	// Name is the key in commands and the API (lower case, digits, _).
	Name  string `yaml:"name"`
	Label string `yaml:"label"`
	// Type is text (default), number or choice.
	Type    string   `yaml:"type"`
	Choices []string `yaml:"choices"`
}

// StatusConfig declares a custom status (codes 2–5 are built in).
type StatusConfig struct {
	Code     int    `yaml:"code"`
	Name     string `yaml:"name"`
	Category string `yaml:"category"`
}

// PipelineConfig declares a pipeline.
type PipelineConfig struct {
	Name                string `yaml:"name"`
	Statuses            []int  `yaml:"statuses"`
	NewStatus           int    `yaml:"new_status"`
	CustomerReplyStatus int    `yaml:"customer_reply_status"`
	// AgentReplyStatus is a status code or "unchanged" (default 3).
	AgentReplyStatus string   `yaml:"agent_reply_status"`
	ClosedReply      string   `yaml:"closed_reply"`
	ReopenWithin     Duration `yaml:"reopen_within"`
	// CloseResolvedAfter closes a ticket that stayed in a resolved
	// status this long (no customer reply took it back); 0 never does.
	CloseResolvedAfter Duration `yaml:"close_resolved_after"`
}

// AgentConfig declares an agent.
type AgentConfig struct {
	Email string `yaml:"email"`
	Name  string `yaml:"name"`
	Role  string `yaml:"role"` // agent or admin
	Group string `yaml:"group"`
}

// ChannelConfig declares a mail channel.
type ChannelConfig struct {
	Name      string   `yaml:"name"`
	Addresses []string `yaml:"addresses"`
	Pipeline  string   `yaml:"pipeline"`
	Language  string   `yaml:"language"`
	// DisplayName is the From display name ("Support ACME").
	DisplayName string      `yaml:"display_name"`
	Group       string      `yaml:"group"`
	Send        SendConfig  `yaml:"send"`
	IMAP        *IMAPConfig `yaml:"imap"`
	// Relay, when set, delivers this channel's outbound mail instead
	// of outbound.relay.
	Relay *RelayConfig `yaml:"relay"`
	// ThreadSameDomain lets mail from the requester's own company domain
	// (a colleague) thread onto a ticket by In-Reply-To/References
	// without being a participant (Freshdesk's company rule). Free-mail
	// domains never count. Default false: only participants thread.
	ThreadSameDomain bool `yaml:"thread_same_domain"`
	// AgentDomainProof lets a trusted dkim=pass whose header.d is an
	// agent's domain, or a dmarc=pass for it, prove that agent. A domain
	// signature proves the domain, not the person: by default only a
	// signature whose header.i is the agent's own address does.
	AgentDomainProof bool `yaml:"agent_domain_proof"`
}

// SendConfig switches the outbound mail of a channel.
type SendConfig struct {
	Confirmation *bool  `yaml:"confirmation"`
	AgentReply   *bool  `yaml:"agent_reply"`
	Notification *bool  `yaml:"notification"`
	NotifyWho    string `yaml:"notify"` // all or assigned
	ClosingMail  *bool  `yaml:"closing_mail"`
	QuoteHistory *bool  `yaml:"quote_history"`
	ExposeAgent  bool   `yaml:"expose_agent_address"`
}

// IMAPConfig configures an IMAP mailbox channel.
type IMAPConfig struct {
	Host          string       `yaml:"host"`
	Port          int          `yaml:"port"`
	TLS           string       `yaml:"tls"` // implicit, starttls, none
	AllowInsecure bool         `yaml:"allow_insecure"`
	Username      string       `yaml:"username"`
	Password      Secret       `yaml:"password"`
	OAuth         *OAuthConfig `yaml:"oauth"`
	Folders       []string     `yaml:"folders"`
	After         string       `yaml:"after"` // seen, move, delete
	MoveTo        string       `yaml:"move_to"`
	FailedFolder  string       `yaml:"failed_folder"`
	// SentFolder, when set, is watched too: mail the team sends
	// straight from the shared mailbox is threaded onto its tickets as
	// agent replies (never sent again, never moved or deleted).
	SentFolder   string   `yaml:"sent_folder"`
	PollInterval Duration `yaml:"poll_interval"`
	IDLE         *bool    `yaml:"idle"`
	// Existing decides what happens to mail already in the mailbox
	// when the channel is first polled: "import" (as history, no mail
	// sent) or "skip" (only mail arriving from now on).
	Existing  string `yaml:"existing"`
	BatchSize int    `yaml:"batch_size"`
	// SetAsideAttempts and SetAsideAfter: a message whose fetch keeps
	// failing (NO/BAD, a dropped connection, a literal cut short) is
	// set aside once it has failed this many times (default 3), over at
	// least this long (default 5m), and the folder carries on.
	SetAsideAttempts int      `yaml:"set_aside_attempts"`
	SetAsideAfter    Duration `yaml:"set_aside_after"`
}

// OAuthConfig configures XOAUTH2/OAUTHBEARER.
type OAuthConfig struct {
	Mechanism    string   `yaml:"mechanism"` // xoauth2 or oauthbearer
	TokenURL     string   `yaml:"token_url"`
	ClientID     string   `yaml:"client_id"`
	ClientSecret Secret   `yaml:"client_secret"`
	RefreshToken Secret   `yaml:"refresh_token"`
	Scopes       []string `yaml:"scopes"`
	TokenCommand string   `yaml:"token_command"`
	TokenFile    string   `yaml:"token_file"`
}

// Secret is a value given inline, from a file ("file:/path") or from an
// environment variable ("env:NAME"). Its String form never shows the
// value.
type Secret struct {
	Inline string `yaml:"value"`
	File   string `yaml:"file"`
	Env    string `yaml:"env"`
	line   int
}

// UnmarshalYAML accepts a plain string ("s3cret", "file:/run/x",
// "env:NAME") or a mapping with value/file/env.
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	s.line = n.Line
	if n.Kind == yaml.ScalarNode {
		v := n.Value
		switch {
		case strings.HasPrefix(v, "file:"):
			s.File = strings.TrimPrefix(v, "file:")
		case strings.HasPrefix(v, "env:"):
			s.Env = strings.TrimPrefix(v, "env:")
		default:
			s.Inline = v
		}
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return errors.New(`must be a secret: a value, "file:/path" or "env:NAME"`)
	}
	type plain Secret
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*s = Secret(p)
	s.line = n.Line
	return nil
}

// IsZero reports whether no secret was configured.
func (s Secret) IsZero() bool { return s.Inline == "" && s.File == "" && s.Env == "" }

// Value resolves the secret. Errors name the file or variable, never
// the value.
func (s Secret) Value() (string, error) {
	switch {
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return "", fmt.Errorf("cannot read secret file %s: %w", s.File, unwrapPath(err))
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case s.Env != "":
		v, ok := os.LookupEnv(s.Env)
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set (export it before starting deskmail)", s.Env)
		}
		return v, nil
	}
	return s.Inline, nil
}

// String hides the value.
func (s Secret) String() string {
	switch {
	case s.File != "":
		return "file:" + s.File
	case s.Env != "":
		return "env:" + s.Env
	case s.Inline != "":
		return "(inline secret)"
	}
	return "(none)"
}

// Duration is a time.Duration written as "90s", "15m", "72h" or "7d".
type Duration struct{ time.Duration }

// UnmarshalYAML parses a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("must be a duration (write 90s, 15m, 72h or 7d), not a list or mapping")
	}
	v := strings.TrimSpace(n.Value)
	if v == "" || v == "0" {
		d.Duration = 0
		return nil
	}
	if strings.HasSuffix(v, "d") {
		var days float64
		if _, err := fmt.Sscanf(strings.TrimSuffix(v, "d"), "%g", &days); err == nil {
			d.Duration = time.Duration(days * 24 * float64(time.Hour))
			return nil
		}
	}
	x, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q is not a duration (write 90s, 15m, 72h or 7d)", v)
	}
	d.Duration = x
	return nil
}

// Problem is one configuration error: where it is and what is wrong.
type Problem struct {
	File string
	// Line is the line of the offending key or value (0 when unknown).
	Line int
	// Path is the YAML key path of the offending value
	// ("smtp.listen", "channels[1].imap.host"); "" for the whole file.
	Path string
	// Msg says what is wrong, without repeating Path.
	Msg string
}

// String is the problem as printed: FILE:LINE: yaml.path: what is wrong.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every error found in a configuration.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Load reads, defaults and validates a configuration file. On failure
// the error is a Problems value listing every problem.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load for bytes already read; name labels the problems.
//
// The file is checked in two passes that both always run: the YAML
// tree against the configuration's structure (unknown and duplicate
// keys, values of the wrong type — see checkTree), then, on what could
// be decoded, the semantic rules (Validate). Every problem of both is
// returned at once, sorted by line.
func Parse(name string, data []byte) (*Config, error) {
	c := &Config{File: name}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, Problems{yamlProblem(name, err)}
	}
	var ps Problems
	if len(bytes.TrimSpace(data)) > 0 {
		ps = checkTree(name, &root)
		if err := root.Decode(c); err != nil {
			// checkTree removes what cannot decode; anything left is
			// reported as yaml.v3 words it.
			var te *yaml.TypeError
			if errors.As(err, &te) {
				for _, e := range te.Errors {
					ps = append(ps, yamlProblem(name, errors.New(e)))
				}
			} else {
				ps = append(ps, yamlProblem(name, err))
			}
		}
	}
	c.File = name
	c.root = &root
	c.applyDefaults()
	ps = append(ps, c.Validate()...)
	if len(ps) > 0 {
		return nil, ps.sorted()
	}
	return c, nil
}

// sorted orders problems by line (a problem without a line first) and
// drops exact repeats.
func (ps Problems) sorted() Problems {
	out := slices.Clone(ps)
	slices.SortStableFunc(out, func(a, b Problem) int { return cmp.Compare(a.Line, b.Line) })
	return slices.Compact(out)
}

// yamlProblem turns "yaml: line 4: ..." or "line 4: ..." into a Problem.
func yamlProblem(name string, err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var line int
	if _, scanErr := fmt.Sscanf(msg, "line %d:", &line); scanErr == nil {
		msg = strings.TrimSpace(msg[strings.Index(msg, ":")+1:])
	}
	return Problem{File: name, Line: line, Msg: msg}
}

// Default returns the configuration used when no file is given.
func Default() *Config {
	c := &Config{}
	c.applyDefaults()
	return c
}
