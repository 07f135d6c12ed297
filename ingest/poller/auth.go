package poller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"golang.org/x/oauth2"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/store"
)

// authenticator logs a channel in. One is shared by all the folder
// pollers of a channel, so that they share one OAuth access token and
// one chain of rotated refresh tokens.
type authenticator struct {
	base    context.Context // lives as long as the pollers
	channel string
	im      *config.IMAPConfig
	st      *store.Store
	opts    Options

	mu    sync.Mutex
	ts    oauth2.TokenSource
	saved string // the refresh token known to be stored
}

func newAuthenticator(base context.Context, channel string, im *config.IMAPConfig, st *store.Store, opts Options) *authenticator {
	return &authenticator{base: base, channel: channel, im: im, st: st, opts: opts}
}

// authenticate logs in with the password (LOGIN, or AUTHENTICATE PLAIN
// where LOGIN is disabled) or with an OAuth access token. Errors name
// the user and the server's answer, never a secret.
func (a *authenticator) authenticate(ctx context.Context, c *imapclient.Client, host string, port int) error {
	im := a.im
	if im.OAuth == nil {
		pw, err := im.Password.Value()
		if err != nil {
			return fmt.Errorf("password (%s): %w", im.Password, err)
		}
		if c.Caps().Has(imap.CapLoginDisabled) {
			if err := c.Authenticate(sasl.NewPlainClient("", im.Username, pw)); err != nil {
				return fmt.Errorf("authenticate as %s: %w", im.Username, err)
			}
			return nil
		}
		if err := c.Login(im.Username, pw).Wait(); err != nil {
			return fmt.Errorf("login as %s: %w", im.Username, err)
		}
		return nil
	}
	tok, err := a.accessToken(ctx)
	if err != nil {
		return fmt.Errorf("oauth: %w", err)
	}
	mech := strings.ToUpper(im.OAuth.Mechanism)
	if mech == "" {
		mech = "XOAUTH2"
	}
	sc := &bearerClient{mech: mech, user: im.Username, token: tok, host: host, port: port}
	if err := c.Authenticate(sc); err != nil {
		// The access token may have been revoked early: the next
		// attempt refreshes it.
		a.forget()
		if sc.failure != "" {
			return fmt.Errorf("authenticate %s as %s: %w (server said %s)", mech, im.Username, err, sc.failure)
		}
		return fmt.Errorf("authenticate %s as %s: %w", mech, im.Username, err)
	}
	return nil
}

// forget drops the cached access token.
func (a *authenticator) forget() {
	a.mu.Lock()
	a.ts = nil
	a.mu.Unlock()
}

// accessToken returns a usable access token: from the token command,
// the token file, or the refresh-token flow. When the provider issues
// a new refresh token it is saved before the access token is used, and
// the saved one is preferred to the configured one from then on.
func (a *authenticator) accessToken(ctx context.Context) (string, error) {
	o := a.im.OAuth
	switch {
	case o.TokenCommand != "":
		return runTokenCommand(ctx, o.TokenCommand)
	case o.TokenFile != "":
		b, err := os.ReadFile(o.TokenFile)
		if err != nil {
			return "", fmt.Errorf("token file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("token file %s is empty", o.TokenFile)
		}
		return tok, nil
	}
	if o.TokenURL == "" {
		return "", errors.New("no token_url, token_command or token_file configured")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ts == nil {
		var rt string
		err := a.st.Read(ctx, func(tx *store.Tx) (err error) {
			rt, err = tx.OAuthRefreshToken(a.channel)
			return err
		})
		switch {
		case errors.Is(err, store.ErrNotFound):
			if rt, err = o.RefreshToken.Value(); err != nil {
				return "", fmt.Errorf("refresh token (%s): %w", o.RefreshToken, err)
			}
		case err != nil:
			return "", fmt.Errorf("load saved refresh token: %w", err)
		}
		if rt == "" {
			return "", errors.New("no refresh token configured")
		}
		secret, err := o.ClientSecret.Value()
		if err != nil {
			return "", fmt.Errorf("client secret (%s): %w", o.ClientSecret, err)
		}
		conf := &oauth2.Config{ClientID: o.ClientID, ClientSecret: secret, Scopes: o.Scopes,
			Endpoint: oauth2.Endpoint{TokenURL: o.TokenURL}}
		a.saved = rt
		a.ts = conf.TokenSource(context.WithValue(a.base, oauth2.HTTPClient, a.opts.HTTPClient), &oauth2.Token{RefreshToken: rt})
	}
	tok, err := a.ts.Token()
	if err != nil {
		a.ts = nil
		return "", describeOAuthError(err)
	}
	if tok.RefreshToken != "" && tok.RefreshToken != a.saved {
		// Rotated: save it now; the provider may already have revoked
		// the old one. Until saved, every call retries.
		wctx, cancel := writeCtx(ctx)
		defer cancel()
		if err := a.st.Write(wctx, func(tx *store.Tx) error { return tx.PutOAuthRefreshToken(a.channel, tok.RefreshToken) }); err != nil {
			return "", fmt.Errorf("save rotated refresh token: %w", err)
		}
		a.saved = tok.RefreshToken
	}
	return tok.AccessToken, nil
}

// describeOAuthError explains a failed refresh without echoing tokens.
func describeOAuthError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		if re.ErrorCode != "" {
			msg := "token endpoint refused the refresh (HTTP " + strconv.Itoa(status) + "): " + re.ErrorCode
			if re.ErrorDescription != "" {
				msg += ": " + re.ErrorDescription
			}
			return errors.New(msg)
		}
		return fmt.Errorf("token endpoint refused the refresh (HTTP %d)", status)
	}
	return fmt.Errorf("token refresh: %w", err)
}

// runTokenCommand runs a command that prints an access token.
func runTokenCommand(ctx context.Context, command string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, "/bin/sh", "-c", command)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		first, _, _ := strings.Cut(strings.TrimSpace(errOut.String()), "\n")
		if len(first) > 200 {
			first = first[:200]
		}
		if first != "" {
			return "", fmt.Errorf("token command: %w: %s", err, first)
		}
		return "", fmt.Errorf("token command: %w", err)
	}
	tok := strings.TrimSpace(out.String())
	if tok == "" {
		return "", errors.New("token command printed nothing")
	}
	return tok, nil
}

// bearerClient is the client side of XOAUTH2 (Google's and Microsoft's
// mechanism) and OAUTHBEARER (RFC 7628). On failure the server sends a
// JSON challenge; the client answers it as each mechanism requires
// (empty response, or the GS2 ^A) so that the server ends the exchange
// with a tagged NO, and keeps the status for the error message.
type bearerClient struct {
	mech, user, token string
	host              string
	port              int
	failure           string
}

// Start implements sasl.Client.
func (b *bearerClient) Start() (string, []byte, error) {
	if b.mech == "OAUTHBEARER" {
		ir := "n,a=" + b.user + ",\x01host=" + b.host + "\x01port=" + strconv.Itoa(b.port) + "\x01auth=Bearer " + b.token + "\x01\x01"
		return "OAUTHBEARER", []byte(ir), nil
	}
	return "XOAUTH2", []byte("user=" + b.user + "\x01auth=Bearer " + b.token + "\x01\x01"), nil
}

// Next implements sasl.Client.
func (b *bearerClient) Next(challenge []byte) ([]byte, error) {
	var e struct {
		Status string `json:"status"`
		Scope  string `json:"scope"`
	}
	if json.Unmarshal(challenge, &e) == nil && e.Status != "" {
		b.failure = "status " + e.Status
	} else {
		b.failure = "an unexpected challenge"
	}
	if b.mech == "OAUTHBEARER" {
		return []byte{0x01}, nil
	}
	return []byte{}, nil
}
