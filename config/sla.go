package config

import (
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/deskmail/deskmail/calendar"
)

// SLAConfig declares the service-level targets: business hours
// calendars and the policies that pick targets by priority and
// channel. The first policy that matches a ticket applies.
type SLAConfig struct {
	BusinessHours []BusinessHoursConfig `yaml:"business_hours"`
	Policies      []SLAPolicyConfig     `yaml:"policies"`
}

// BusinessHoursConfig is a named calendar: durations of the policies
// that use it count only inside these hours.
type BusinessHoursConfig struct {
	Name string `yaml:"name"`
	// TimeZone is an IANA zone (default UTC).
	TimeZone string `yaml:"time_zone"`
	// Hours are lines "mon-fri 09:00-18:00" or "sat 09:00-12:00,14:00-17:00".
	Hours []string `yaml:"hours"`
	// Holidays are dates (2006-01-02) on which nothing counts.
	Holidays []string `yaml:"holidays"`
}

// SLAPolicyConfig is one SLA policy.
type SLAPolicyConfig struct {
	Name string `yaml:"name"`
	// Priorities the policy applies to (1–4; empty: every priority).
	Priorities []int `yaml:"priorities"`
	// Channels the policy applies to (empty: every channel).
	Channels []string `yaml:"channels"`
	// FirstResponse is the time to the first agent reply (0: none).
	FirstResponse Duration `yaml:"first_response"`
	// Resolution is the time to a resolved status (0: none).
	Resolution Duration `yaml:"resolution"`
	// BusinessHours names a calendar of sla.business_hours; empty
	// counts every hour of every day.
	BusinessHours string `yaml:"business_hours"`
}

// WebhookConfig is an HTTP endpoint that receives ticket events as
// JSON, signed with HMAC-SHA256.
type WebhookConfig struct {
	Name string `yaml:"name"`
	URL  string `yaml:"url"`
	// Secret keys the X-Deskmail-Signature header.
	Secret Secret `yaml:"secret"`
	// Events the webhook receives (empty: every event).
	Events []string `yaml:"events"`
	// Timeout bounds one delivery attempt (default 10s).
	Timeout Duration `yaml:"timeout"`
	// MaxAttempts bounds the retries (default 20, over about a day).
	MaxAttempts int `yaml:"max_attempts"`
}

// WebhookEvents are the events a webhook may subscribe to.
var WebhookEvents = []string{"ticket_created", "customer_replied", "agent_replied", "note_added", "status_changed",
	"ticket_resolved", "ticket_closed", "sla_breached"}

func (c *Config) validateSLA(add func(at loc, format string, args ...any)) {
	cals := map[string]bool{}
	for i, b := range c.SLA.BusinessHours {
		if strings.TrimSpace(b.Name) == "" {
			add(c.at("sla", "business_hours", i, "name"), "business hours need a name (policies refer to it)")
		} else if cals[b.Name] {
			add(c.at("sla", "business_hours", i, "name"), "business hours %q are declared twice", b.Name)
		}
		cals[b.Name] = true
		if _, err := time.LoadLocation(b.TimeZone); b.TimeZone != "" && err != nil {
			add(c.at("sla", "business_hours", i, "time_zone"), "time zone %q is unknown (write an IANA name such as Europe/Paris)", b.TimeZone)
			continue
		}
		for j, h := range b.Hours {
			if _, err := calendar.New(b.TimeZone, []string{h}, nil); err != nil {
				add(c.at("sla", "business_hours", i, "hours", j), "%v", err)
			}
		}
		for j, h := range b.Holidays {
			if _, err := calendar.New(b.TimeZone, []string{"mon 00:00-24:00"}, []string{h}); err != nil {
				add(c.at("sla", "business_hours", i, "holidays", j), "%v", err)
			}
		}
		if len(b.Hours) == 0 {
			add(c.at("sla", "business_hours", i), `business hours %q have no hours (write for example hours: ["mon-fri 09:00-18:00"])`, b.Name)
		}
	}
	chans := map[string]bool{}
	for _, ch := range c.Channels {
		chans[ch.Name] = true
	}
	names := map[string]bool{}
	for i, p := range c.SLA.Policies {
		if strings.TrimSpace(p.Name) == "" {
			add(c.at("sla", "policies", i, "name"), "policy has no name")
		} else if names[p.Name] {
			add(c.at("sla", "policies", i, "name"), "policy %q is declared twice", p.Name)
		}
		names[p.Name] = true
		for j, pr := range p.Priorities {
			if pr < 1 || pr > 4 {
				add(c.at("sla", "policies", i, "priorities", j), "priority %d is not 1 (low) to 4 (urgent)", pr)
			}
		}
		for j, ch := range p.Channels {
			if !chans[ch] {
				add(c.at("sla", "policies", i, "channels", j), "channel %q is not declared under channels", ch)
			}
		}
		if p.FirstResponse.Duration < 0 {
			add(c.at("sla", "policies", i, "first_response"), "must not be negative")
		}
		if p.Resolution.Duration < 0 {
			add(c.at("sla", "policies", i, "resolution"), "must not be negative")
		}
		if p.FirstResponse.Duration == 0 && p.Resolution.Duration == 0 {
			add(c.at("sla", "policies", i), "policy %q sets neither first_response nor resolution (for example first_response: 1h, resolution: 8h)", p.Name)
		}
		if p.BusinessHours != "" && !cals[p.BusinessHours] {
			add(c.at("sla", "policies", i, "business_hours"), "%q is not declared under sla.business_hours", p.BusinessHours)
		}
	}
}

func (c *Config) validateWebhooks(add func(at loc, format string, args ...any)) {
	names := map[string]bool{}
	for i, w := range c.Webhooks {
		if strings.TrimSpace(w.Name) == "" {
			add(c.at("webhooks", i, "name"), "webhook has no name")
		} else if names[w.Name] {
			add(c.at("webhooks", i, "name"), "webhook %q is declared twice", w.Name)
		}
		names[w.Name] = true
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add(c.at("webhooks", i, "url"), "%q must be an http:// or https:// URL", w.URL)
		}
		if w.Secret.IsZero() {
			add(c.at("webhooks", i, "secret"), "a webhook needs a secret to sign its payloads (write env:NAME or file:/path)")
		}
		for j, e := range w.Events {
			if !slices.Contains(WebhookEvents, e) {
				add(c.at("webhooks", i, "events", j), "%q is not an event (%s)", e, strings.Join(WebhookEvents, ", "))
			}
		}
		if w.Timeout.Duration < 0 {
			add(c.at("webhooks", i, "timeout"), "must not be negative")
		}
		if w.MaxAttempts < 0 {
			add(c.at("webhooks", i, "max_attempts"), "must not be negative")
		}
	}
}
