package poller

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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

	mu sync.Mutex
	ts oauth2.TokenSource
	// expiry is the expiry of the access token last recorded in the
	// store (for the ops views).
	expiry time.Time
	// saved and savedOrigin are what the store holds: the refresh
	// token and the hash of the configured token its chain started
	// from; origin is the hash of the configured token the current
	// chain started from.
	saved, savedOrigin, origin string
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
// the saved one is preferred to the configured one from then on, as
// long as the configured one is the one the chain started from (see
// refreshToken).
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
		rt, err := a.refreshToken(ctx)
		if err != nil {
			return "", err
		}
		secret, err := o.ClientSecret.Value()
		if err != nil {
			return "", fmt.Errorf("client secret (%s): %w", o.ClientSecret, err)
		}
		conf := &oauth2.Config{ClientID: o.ClientID, ClientSecret: secret, Scopes: o.Scopes,
			Endpoint: oauth2.Endpoint{TokenURL: o.TokenURL}}
		a.ts = conf.TokenSource(context.WithValue(a.base, oauth2.HTTPClient, a.opts.HTTPClient), &oauth2.Token{RefreshToken: rt})
	}
	tok, err := a.ts.Token()
	if err != nil {
		a.ts = nil
		return "", describeOAuthError(err)
	}
	// The oauth2 package carries the refresh token over when the
	// provider sends none, so tok.RefreshToken is the current one.
	if rt := tok.RefreshToken; rt != "" && (rt != a.saved || a.origin != a.savedOrigin) {
		// Rotated (or re-authorized): save it now; the provider may
		// already have revoked the old one. Until saved, every call
		// retries.
		wctx, cancel := writeCtx(ctx)
		defer cancel()
		if err := a.st.Write(wctx, func(tx *store.Tx) error { return tx.PutOAuthToken(a.channel, rt, a.origin) }); err != nil {
			return "", fmt.Errorf("save rotated refresh token: %w", err)
		}
		a.saved, a.savedOrigin = rt, a.origin
	}
	if !tok.Expiry.IsZero() && !tok.Expiry.Equal(a.expiry) {
		// A new access token: its expiry is for the ops views only, so
		// failing to record it is logged, not a reason not to poll.
		wctx, cancel := writeCtx(ctx)
		defer cancel()
		if err := a.st.Write(wctx, func(tx *store.Tx) error { return tx.RecordOAuthExpiry(a.channel, tok.Expiry) }); err != nil {
			a.log().Warn("record oauth token expiry", "err", err)
		} else {
			a.expiry = tok.Expiry
		}
	}
	return tok.AccessToken, nil
}

// refreshToken chooses the refresh token to start from. The saved one
// (the newest of the chain the provider rotates) wins while it
// descends from the configured one; when the operator has put a
// different token in the configuration (re-consent after a revocation,
// a new account) the configured one wins and replaces the saved one at
// its first successful refresh. Tokens are compared by SHA-256, which
// is what the store keeps of the configured one. Called with a.mu held.
func (a *authenticator) refreshToken(ctx context.Context) (string, error) {
	o := a.im.OAuth
	configured, cerr := o.RefreshToken.Value()
	var saved *store.SavedOAuthToken
	err := a.st.Read(ctx, func(tx *store.Tx) (err error) {
		saved, err = tx.OAuthToken(a.channel)
		return err
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("load saved refresh token: %w", err)
	}
	if cerr != nil {
		if saved != nil && saved.RefreshToken != "" {
			// The configured token is unreadable (a file gone):
			// the saved chain still works on its own.
			a.origin, a.saved, a.savedOrigin = saved.ConfiguredSHA256, saved.RefreshToken, saved.ConfiguredSHA256
			return saved.RefreshToken, nil
		}
		return "", fmt.Errorf("refresh token (%s): %w", o.RefreshToken, cerr)
	}
	a.origin = ""
	if configured != "" {
		a.origin = tokenHash(configured)
	}
	switch {
	case saved == nil || saved.RefreshToken == "":
		// First use: nothing saved yet.
		a.saved, a.savedOrigin = configured, a.origin
		if saved != nil {
			a.saved = ""
		}
	case saved.ConfiguredSHA256 == "" || saved.ConfiguredSHA256 == a.origin || configured == "":
		// The saved chain descends from the configured token (or was
		// saved before origins were kept: adopt the configured one as
		// its origin at the next save).
		a.saved, a.savedOrigin = saved.RefreshToken, saved.ConfiguredSHA256
		a.log().Debug("imap oauth: using the saved refresh token")
		return saved.RefreshToken, nil
	default:
		a.saved, a.savedOrigin = saved.RefreshToken, saved.ConfiguredSHA256
		a.log().Info("imap oauth: the configured refresh token changed; it replaces the saved one")
	}
	if configured == "" {
		return "", errors.New("no refresh token configured")
	}
	return configured, nil
}

func (a *authenticator) log() *slog.Logger { return a.opts.Logger.With("channel", a.channel) }

// tokenHash is the hex SHA-256 of a refresh token: enough to tell
// whether the configured token changed, without storing it.
func tokenHash(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
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
