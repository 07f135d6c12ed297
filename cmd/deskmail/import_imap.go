package main

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/ingest/poller"
)

// imapFolder is one IMAP folder an import reads: a folder of a
// configured channel's mailbox (--imap, --folder) or one named by an
// imap:// or imaps:// URL.
type imapFolder struct {
	mb     *poller.Mailbox
	folder string
	sent   bool
	label  string // for messages: "support/INBOX" or the URL without password
}

// isIMAPURL reports whether a SOURCE is an IMAP URL.
func isIMAPURL(s string) bool {
	l := strings.ToLower(s)
	return strings.HasPrefix(l, "imap://") || strings.HasPrefix(l, "imaps://")
}

// channelFolders are the folders of the channel's configured IMAP
// mailbox an import reads: those named with --folder, else the
// channel's watched folders (default INBOX) and its Sent folder.
func channelFolders(ctx context.Context, rt *runtime, channel string, named []string, opts poller.Options) ([]imapFolder, error) {
	var ch *config.ChannelConfig
	for i := range rt.cfg.Channels {
		if rt.cfg.Channels[i].Name == channel {
			ch = &rt.cfg.Channels[i]
		}
	}
	if ch == nil || ch.IMAP == nil || ch.IMAP.Host == "" {
		return nil, fmt.Errorf("%w: channel %q has no imap section to import from (or name an imaps://user@host/Folder URL)", errUsage, channel)
	}
	im := ch.IMAP
	mb := poller.OpenMailbox(ctx, ch.Name, im, rt.st, opts)
	folders := named
	if len(folders) == 0 {
		folders = append([]string(nil), im.Folders...)
		if len(folders) == 0 {
			folders = []string{"INBOX"}
		}
		if im.SentFolder != "" && !slices.Contains(folders, im.SentFolder) {
			folders = append(folders, im.SentFolder)
		}
	}
	var out []imapFolder
	for _, f := range folders {
		if slices.ContainsFunc(out, func(o imapFolder) bool { return o.folder == f }) {
			continue
		}
		out = append(out, imapFolder{mb: mb, folder: f, sent: im.SentFolder != "" && f == im.SentFolder, label: ch.Name + "/" + f})
	}
	return out, nil
}

// urlFolder reads an imap:// (STARTTLS, port 143) or imaps:// (TLS,
// port 993) URL, user@host[:port]/Folder (RFC 5092's form; no folder
// is INBOX; ?tls=none for clear text, loopback only), with the password
// from --password (env:NAME or file:PATH, as in the configuration).
func urlFolder(ctx context.Context, rt *runtime, raw, password, channel string, opts poller.Options) (imapFolder, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return imapFolder{}, fmt.Errorf("%w: %s: not an IMAP URL: %v", errUsage, redactURL(raw), err)
	}
	if _, has := u.User.Password(); has {
		return imapFolder{}, fmt.Errorf("%w: %s: put no password in the URL (it would show in ps and shell history); use --password env:NAME or file:PATH", errUsage, redactURL(raw))
	}
	im := &config.IMAPConfig{Host: u.Hostname(), Username: u.User.Username(), TLS: "implicit", Port: 993}
	if strings.EqualFold(u.Scheme, "imap") {
		im.TLS, im.Port = "starttls", 143
	}
	switch t := u.Query().Get("tls"); t {
	case "":
	case "none":
		if h := im.Host; h != "localhost" && h != "127.0.0.1" && h != "::1" {
			return imapFolder{}, fmt.Errorf("%w: %s: tls=none sends the password in clear; allowed only for loopback", errUsage, redactURL(raw))
		}
		im.TLS = "none"
	default:
		return imapFolder{}, fmt.Errorf("%w: %s: tls=%s: want none (or no tls=: imaps:// is TLS, imap:// STARTTLS)", errUsage, redactURL(raw), t)
	}
	if p := u.Port(); p != "" {
		if im.Port, err = strconv.Atoi(p); err != nil || im.Port <= 0 || im.Port > 65535 {
			return imapFolder{}, fmt.Errorf("%w: %s: bad port %q", errUsage, redactURL(raw), p)
		}
	}
	if im.Host == "" || im.Username == "" {
		return imapFolder{}, fmt.Errorf("%w: %s: want imaps://USER@HOST[:PORT]/FOLDER", errUsage, redactURL(raw))
	}
	switch {
	case strings.HasPrefix(password, "env:"):
		im.Password.Env = strings.TrimPrefix(password, "env:")
	case strings.HasPrefix(password, "file:"):
		im.Password.File = strings.TrimPrefix(password, "file:")
	case password == "":
		return imapFolder{}, fmt.Errorf("%w: %s: --password env:NAME or file:PATH is required", errUsage, redactURL(raw))
	default:
		return imapFolder{}, fmt.Errorf("%w: --password takes env:NAME or file:PATH, never the password itself", errUsage)
	}
	folder := strings.TrimPrefix(u.Path, "/")
	if folder == "" {
		folder = "INBOX"
	}
	name := channel
	if name == "" {
		name = "import" // labels the connection and its errors only
	}
	return imapFolder{mb: poller.OpenMailbox(ctx, name, im, rt.st, opts), folder: folder, label: redactURL(raw)}, nil
}

// redactURL drops a password from a URL for messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
