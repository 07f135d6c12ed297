package main

import (
	"fmt"
	"time"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/webhook"
)

// webhookHooks builds the configured webhooks, their secrets resolved.
func webhookHooks(cfg *config.Config) (*webhook.Hooks, error) {
	var hooks []webhook.Hook
	for _, w := range cfg.Webhooks {
		secret, err := w.Secret.Value()
		if err != nil {
			return nil, fmt.Errorf("webhooks %s: secret: %w", w.Name, err)
		}
		hooks = append(hooks, webhook.Hook{Name: w.Name, URL: w.URL, Secret: []byte(secret), Events: w.Events,
			Timeout: w.Timeout.Duration, MaxAttempts: w.MaxAttempts})
	}
	base := cfg.HTTP.PublicURL
	if base == "" {
		base = "http://" + cfg.HTTP.Listen
	}
	return webhook.New(hooks, base), nil
}

// webhookBreach is a missed target as a webhook payload shows it.
func webhookBreach(target, policy string, due time.Time) *webhook.Breach {
	return &webhook.Breach{Target: target, Policy: policy, DueAt: due.UTC()}
}
