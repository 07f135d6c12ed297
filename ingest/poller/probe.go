package poller

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/store"
)

// ProbeReport is what `deskmail channels test` shows about a channel's
// mailbox.
type ProbeReport struct {
	Channel      string         `json:"channel"`
	Server       string         `json:"server"`
	TLS          string         `json:"tls"`
	Capabilities []string       `json:"capabilities"`
	IDLE         bool           `json:"idle"`
	Move         bool           `json:"move"`
	UIDPlus      bool           `json:"uidplus"`
	Folders      []FolderReport `json:"folders"`
}

// FolderReport describes one watched folder.
type FolderReport struct {
	Name        string `json:"name"`
	Messages    uint32 `json:"messages"`
	Unseen      uint32 `json:"unseen"`
	UIDValidity uint32 `json:"uid_validity"`
	UIDNext     uint32 `json:"uid_next"`
}

// Probe connects to a channel's server, authenticates, and reports the
// capabilities and the message counts of the watched folders, changing
// nothing on the server (STATUS only). st is needed for OAuth channels:
// a refresh token the provider rotates during the probe is saved there.
// On failure the report holds what was learned so far; Explain turns
// the error into one plain sentence.
func Probe(ctx context.Context, ch *config.ChannelConfig, st *store.Store, opts Options) (*ProbeReport, error) {
	im := ch.IMAP
	if im == nil {
		return nil, fmt.Errorf("imap %s: the channel has no imap section", ch.Name)
	}
	if im.OAuth != nil && im.OAuth.TokenCommand == "" && im.OAuth.TokenFile == "" && st == nil {
		return nil, fmt.Errorf("imap %s: probing an OAuth channel needs the database to keep rotated refresh tokens", ch.Name)
	}
	opts.fill()
	rep := &ProbeReport{Channel: ch.Name, Server: net.JoinHostPort(im.Host, strconv.Itoa(im.Port)), TLS: im.TLS}
	c, _, err := dial(ctx, im.Host, im.Port, im.TLS, opts.TLSConfig, opts.commandTimeout, &imapclient.Options{})
	if err != nil {
		return rep, fmt.Errorf("imap %s: %w", ch.Name, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if err := c.WaitGreeting(); err != nil {
		return rep, fmt.Errorf("imap %s: greeting: %w", ch.Name, err)
	}
	if c.State() == imap.ConnStateNotAuthenticated {
		auth := newAuthenticator(ctx, ch.Name, im, st, opts)
		if err := auth.authenticate(ctx, c, im.Host, im.Port); err != nil {
			return rep, fmt.Errorf("imap %s: %w", ch.Name, err)
		}
	}
	caps := c.Caps()
	for cp := range caps {
		rep.Capabilities = append(rep.Capabilities, string(cp))
	}
	sort.Strings(rep.Capabilities)
	rep.IDLE, rep.Move, rep.UIDPlus = caps.Has(imap.CapIdle), caps.Has(imap.CapMove), caps.Has(imap.CapUIDPlus)
	s := &session{p: &folderPoller{channel: ch.Name, im: im}, c: c}
	if list, err := c.List("", "", nil).Collect(); err == nil && len(list) > 0 {
		s.delim = list[0].Delim
	}
	for _, f := range im.Folders {
		sd, err := c.Status(s.serverName(f), &imap.StatusOptions{NumMessages: true, NumUnseen: true, UIDNext: true, UIDValidity: true}).Wait()
		if err != nil {
			return rep, fmt.Errorf("imap %s: folder %s: %w", ch.Name, f, err)
		}
		fr := FolderReport{Name: f, UIDValidity: sd.UIDValidity, UIDNext: uint32(sd.UIDNext)}
		if sd.NumMessages != nil {
			fr.Messages = *sd.NumMessages
		}
		if sd.NumUnseen != nil {
			fr.Unseen = *sd.NumUnseen
		}
		rep.Folders = append(rep.Folders, fr)
	}
	_ = c.Logout().Wait()
	return rep, nil
}

// Explain turns a connection error of Probe or of a poller into one
// plain sentence for an operator.
func Explain(err error) string {
	if err == nil {
		return "the mailbox works"
	}
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var ie *imap.Error
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	msg := err.Error()
	switch {
	case errors.As(err, &dnsErr):
		return "The server's host name could not be found (DNS): check imap.host."
	case errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &invalid), strings.Contains(msg, "certificate"):
		return "The server's TLS certificate was refused (unknown authority, wrong name or expired): check imap.host and the server's certificate."
	case strings.Contains(msg, "oauth:"):
		return "The OAuth token could not be obtained (refresh refused or token source failing): re-authorize the mailbox and check the oauth settings."
	case strings.Contains(msg, "password ("):
		return "The password could not be read from its file or environment variable."
	case errors.As(err, &ie) && (ie.Code == imap.ResponseCodeAuthenticationFailed || ie.Code == imap.ResponseCodeAuthorizationFailed ||
		strings.Contains(msg, "login as") || strings.Contains(msg, "authenticate")):
		return "The server refused the user name or password (or token): check imap.username and the credentials."
	case errors.As(err, &ie) && (ie.Code == imap.ResponseCodeNonExistent || strings.Contains(msg, "folder")):
		return "A watched folder does not exist on the server: check imap.folders."
	case errors.As(err, &opErr) && opErr.Op == "dial", strings.Contains(msg, "connect "):
		return "The server could not be reached (refused, unreachable or timed out): check imap.host, imap.port and the firewall."
	case strings.Contains(msg, "tls handshake") || strings.Contains(msg, "starttls"):
		return "The TLS handshake failed: check imap.tls (implicit for port 993, starttls for 143)."
	}
	return "The mailbox check failed: " + msg
}
