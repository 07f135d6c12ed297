package receiver

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/ingest"
	"github.com/deskmail/deskmail/metrics"
	"github.com/deskmail/deskmail/threading"
)

// Submitter takes one received message and returns once it is durable.
// *ingest.Pipeline implements it: a nil error means the message is
// committed, and only then does the receiver answer 250. Submit is
// called from many sessions at once.
type Submitter interface {
	Submit(ctx context.Context, r ingest.Raw) (ingest.Result, error)
}

// Options configures a Server. Config, Addresses and Submitter are
// required.
type Options struct {
	// Config holds the listen addresses, limits, TLS files and AUTH
	// users (config.Config.SMTP).
	Config config.SMTPConfig
	// Agents are the configured agents; an SMTP user whose Agent names
	// one of them proves that agent's identity when it authenticates.
	Agents []config.AgentConfig
	// Addresses decides which recipients are ours.
	Addresses *threading.Addresses
	// Submitter receives every accepted message.
	Submitter Submitter
	// Logger receives the receiver's logs (default: slog.Default()).
	Logger *slog.Logger
	// TLSConfig, when set, is used instead of loading
	// Config.CertFile/KeyFile.
	TLSConfig *tls.Config
	// MaxBufferedBytes bounds the memory that the messages being
	// received and stored take together (smtp.max_memory; default
	// 384 MiB, at least memoryCost times smtp.max_message_bytes so
	// that one maximal message fits). A message costs memoryCost (6)
	// times its raw size from its first byte until its Submit
	// returns: the raw bytes, the decoded parts and the store's
	// copies. A message of announced SIZE waits (up to MemoryWait)
	// until its whole cost fits; one without SIZE is refused with
	// 452 4.3.1 as soon as its next bytes do not fit. Either way the
	// sender retries later.
	MaxBufferedBytes int64
	// MemoryWait bounds how long a message of announced SIZE waits for
	// room in MaxBufferedBytes before 452 4.3.1 (default 60 seconds).
	MemoryWait time.Duration
	// SubmitTimeout bounds one Submit (default 2 minutes); when it
	// expires the client gets 451 and retries.
	SubmitTimeout time.Duration
	// ShutdownGrace bounds how long sessions inside DATA may run after
	// the context ends (default 30 seconds).
	ShutdownGrace time.Duration
	// OnListen, when set, is called with every bound address before
	// connections are accepted (implicitTLS marks the smtps listener).
	OnListen func(addr net.Addr, implicitTLS bool)
	// Metrics, when set, counts sessions and refusals.
	Metrics *metrics.Metrics
	// Now returns the current time (default time.Now); tests set it.
	Now func() time.Time
	// AuthDelay is the delay before answering the second failed AUTH
	// attempt of a user name or address; it doubles with each further
	// failure, up to 10 seconds (default 250ms).
	AuthDelay time.Duration
}

// Server is the SMTP receiver. It is safe for concurrent use; Serve may
// run on several listeners at once.
type Server struct {
	opts   Options
	cfg    config.SMTPConfig
	log    *slog.Logger
	tls    *tls.Config
	users  map[string]smtpUser
	dummy  [32]byte // hashed against when a user does not exist
	conns  *tracker
	ipRate *rateLimiter
	from   *rateLimiter
	// relayFrom limits senders of mail from trusted relays
	// (smtp.relay_sender_rate_per_minute); relays are those relays.
	relayFrom *rateLimiter
	relays    []netip.Prefix
	// minRate is smtp.min_data_rate in bytes a second (0: no floor).
	minRate float64
	// authGuard counts failed AUTH per user name and client address.
	authGuard *authGuard
	now       func() time.Time
	// buffered is the memory the messages in flight cost.
	buffered *budget
	// addrs is the current support address map (SetAddresses).
	addrs atomic.Pointer[threading.Addresses]
}

// smtpUser is one AUTH account with its password hashed (so
// comparisons are constant-time and length-independent).
type smtpUser struct {
	hash  [32]byte
	agent string // agent email, or ""
}

// New checks the options, loads the TLS certificate and resolves the
// AUTH users' passwords. It does not listen yet.
func New(opts Options) (*Server, error) {
	if opts.Addresses == nil {
		return nil, errors.New("receiver: no support addresses")
	}
	if opts.Submitter == nil {
		return nil, errors.New("receiver: no submitter")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.SubmitTimeout <= 0 {
		opts.SubmitTimeout = 2 * time.Minute
	}
	if opts.MaxBufferedBytes <= 0 {
		opts.MaxBufferedBytes = config.DefaultMaxMemory
	}
	if floor := memoryCost * (opts.Config.MaxMessageBytes + 4096); opts.MaxBufferedBytes < floor {
		opts.MaxBufferedBytes = floor
	}
	if opts.MemoryWait <= 0 {
		opts.MemoryWait = time.Minute
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AuthDelay <= 0 {
		opts.AuthDelay = 250 * time.Millisecond
	}
	cfg := opts.Config
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.MaxLineLength <= 0 {
		cfg.MaxLineLength = 4000
	}
	s := &Server{
		opts:  opts,
		cfg:   cfg,
		log:   opts.Logger,
		tls:   opts.TLSConfig,
		users: map[string]smtpUser{},
		now:   opts.Now,
	}
	if s.tls == nil && cfg.CertFile != "" {
		cl, err := newCertLoader(cfg.CertFile, cfg.KeyFile, opts.Logger)
		if err != nil {
			return nil, err
		}
		s.tls = &tls.Config{GetCertificate: cl.GetCertificate, MinVersion: tls.VersionTLS12}
	}
	if cfg.TLSListen != "" && s.tls == nil {
		return nil, errors.New("receiver: smtp.tls_listen needs a certificate (cert_file and key_file)")
	}
	agents := map[string]string{}
	for _, a := range opts.Agents {
		agents[strings.ToLower(a.Email)] = a.Email
	}
	if cfg.Auth {
		if s.tls == nil {
			return nil, errors.New("receiver: smtp.auth needs TLS (cert_file and key_file): AUTH is only offered over TLS")
		}
		for _, u := range cfg.Users {
			if u.Username == "" {
				return nil, errors.New("receiver: an smtp user has no username")
			}
			pw, err := u.Password.Value()
			if err != nil {
				return nil, fmt.Errorf("receiver: smtp user %s: password: %w", u.Username, err)
			}
			if pw == "" {
				return nil, fmt.Errorf("receiver: smtp user %s has an empty password", u.Username)
			}
			su := smtpUser{hash: sha256.Sum256([]byte(pw))}
			if u.Agent != "" {
				email, ok := agents[strings.ToLower(u.Agent)]
				if !ok {
					return nil, fmt.Errorf("receiver: smtp user %s names agent %q, which is not a configured agent", u.Username, u.Agent)
				}
				su.agent = email
			}
			s.users[u.Username] = su
		}
	}
	s.addrs.Store(opts.Addresses)
	s.buffered = newBudget(opts.MaxBufferedBytes)
	s.dummy = sha256.Sum256([]byte("deskmail: no such user"))
	s.conns = newTracker(cfg.MaxConnections, cfg.MaxConnectionsPerIP)
	if cfg.RatePerMinute > 0 {
		s.ipRate = newRateLimiter(float64(cfg.RatePerMinute), 100_000, s.now)
		s.from = newRateLimiter(float64(cfg.RatePerMinute), 100_000, s.now)
	}
	relays, err := cfg.TrustedRelayPrefixes()
	if err != nil {
		return nil, fmt.Errorf("receiver: smtp.trusted_relays: %w", err)
	}
	s.relays = relays
	lockFor := cfg.AuthLockout.Duration
	if lockFor <= 0 {
		lockFor = 15 * time.Minute
	}
	s.authGuard = newAuthGuard(cfg.AuthLockoutAfter, lockFor, opts.AuthDelay, s.now)
	if cfg.MinDataRate > 0 {
		s.minRate = float64(cfg.MinDataRate)
	}
	if cfg.RelaySenderRatePerMinute > 0 {
		s.relayFrom = newRateLimiter(float64(cfg.RelaySenderRatePerMinute), 100_000, s.now)
	}
	return s, nil
}

// ListenAndServe listens on Config.Listen (STARTTLS offered when a
// certificate is configured) and, when set, Config.TLSListen (implicit
// TLS), and serves until ctx ends. Each bound address is logged and
// passed to Options.OnListen before the first connection is accepted.
func (s *Server) ListenAndServe(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("receiver: listen on %s: %w", s.cfg.Listen, err)
	}
	var tln net.Listener
	if s.cfg.TLSListen != "" {
		tln, err = lc.Listen(ctx, "tcp", s.cfg.TLSListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("receiver: listen on %s: %w", s.cfg.TLSListen, err)
		}
	}
	// If one listener fails, the other stops too.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	n := 1
	go func() { errc <- s.Serve(ctx, ln) }()
	if tln != nil {
		n++
		go func() { errc <- s.ServeTLS(ctx, tln) }()
	}
	var errs []error
	for range n {
		if err := <-errc; err != nil {
			errs = append(errs, err)
			cancel()
		}
	}
	return errors.Join(errs...)
}

// Serve accepts SMTP connections on l until ctx ends, then shuts down
// gracefully (see the package documentation) and returns nil. It
// returns an error if accepting fails for another reason. Serve closes
// l.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	return s.serve(ctx, l, false)
}

// ServeTLS is Serve for an implicit-TLS listener (the smtps port): the
// TLS handshake happens before the greeting.
func (s *Server) ServeTLS(ctx context.Context, l net.Listener) error {
	if s.tls == nil {
		l.Close()
		return errors.New("receiver: implicit TLS needs a certificate")
	}
	return s.serve(ctx, l, true)
}

func (s *Server) serve(ctx context.Context, l net.Listener, implicitTLS bool) error {
	if ctx.Err() != nil {
		l.Close()
		return nil
	}
	srv := smtp.NewServer(s)
	srv.Domain = s.cfg.Hostname
	srv.MaxMessageBytes = s.cfg.MaxMessageBytes
	srv.MaxRecipients = s.cfg.MaxRecipients
	srv.MaxLineLength = s.cfg.MaxLineLength
	srv.AllowInsecureAuth = false
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = slogPrinter{s.log}
	// Read and write deadlines are set by trackedConn on every
	// operation (go-smtp's own deadlines would not cover the DATA
	// phase nor bound the session).
	srv.TLSConfig = s.tls

	ll := &limitListener{Listener: l, s: s, implicitTLS: implicitTLS}
	var sl net.Listener = ll
	if implicitTLS {
		sl = tls.NewListener(ll, s.tls)
	}
	if s.opts.OnListen != nil {
		s.opts.OnListen(l.Addr(), implicitTLS)
	}
	s.log.Info("smtp: listening", "addr", l.Addr().String(), "implicit_tls", implicitTLS, "starttls", s.tls != nil && !implicitTLS)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(sl) }()
	select {
	case err := <-errc:
		srv.Close()
		if err != nil {
			return fmt.Errorf("receiver: serve %s: %w", l.Addr(), err)
		}
		return nil
	case <-ctx.Done():
	}

	// Graceful shutdown: stop accepting, end idle sessions, let DATA
	// finish, then cut off whatever is left after the grace period.
	// A session inside DATA is ended right after its reply (see
	// trackedConn.Read); connections accepted in the same instant are
	// marked closing by tracker.add.
	ll.Close()
	s.conns.drain(ll)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.ShutdownGrace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		s.log.Warn("smtp: sessions still open after the shutdown grace period; closing them", "addr", l.Addr().String(), "grace", s.opts.ShutdownGrace.String())
		srv.Close()
	}
	<-errc
	s.log.Info("smtp: stopped", "addr", l.Addr().String())
	return nil
}

// NewSession implements smtp.Backend. It is called after HELO/EHLO
// (again after STARTTLS).
func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	tc := unwrapConn(c.Conn())
	if tc == nil {
		// Not accepted through limitListener: should not happen.
		return nil, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Service not available"}
	}
	se := &session{s: s, c: c, tc: tc}
	if st, ok := c.TLSConnectionState(); ok {
		se.tls = true
		se.tlsTag = strings.ReplaceAll(tls.VersionName(st.Version), " ", "") + " " + sanitizeComment(tls.CipherSuiteName(st.CipherSuite))
	}
	return se, nil
}

// slogPrinter adapts go-smtp's Logger to slog. A client that hangs up
// abruptly (a TCP health probe, a load balancer's check, a scanner)
// is logged at debug level: nothing is wrong with deskmail.
type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Printf(format string, v ...any) {
	p.log(strings.TrimSpace(fmt.Sprintf(format, v...)))
}

func (p slogPrinter) Println(v ...any) {
	p.log(strings.TrimSpace(fmt.Sprintln(v...)))
}

func (p slogPrinter) log(msg string) {
	for _, hangup := range []string{"connection reset by peer", "broken pipe", "EOF", "use of closed network connection"} {
		if strings.HasSuffix(msg, hangup) {
			p.l.Debug("smtp: client hung up", "detail", msg)
			return
		}
	}
	p.l.Warn("smtp: " + msg)
}

// unwrapConn finds the trackedConn under TLS wrappers.
func unwrapConn(c net.Conn) *trackedConn {
	for range 4 {
		switch x := c.(type) {
		case *trackedConn:
			return x
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// errorf builds the *smtp.SMTPError go-smtp sends as is.
func errorf(code int, enh smtp.EnhancedCode, format string, args ...any) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: fmt.Sprintf(format, args...)}
}

var (
	errTempFail     = errorf(451, smtp.EnhancedCode{4, 3, 0}, "Temporary local problem, please try again later")
	errShuttingDown = errorf(421, smtp.EnhancedCode{4, 3, 2}, "Service shutting down, please try again later")
	errIPRate       = errorf(450, smtp.EnhancedCode{4, 7, 1}, "Too much mail from your address, please slow down and try again later")
	errSenderRate   = errorf(450, smtp.EnhancedCode{4, 7, 1}, "Too much mail from this sender, please try again later")
	errBadRcpt      = errorf(550, smtp.EnhancedCode{5, 1, 1}, "No such recipient here (this server does not relay)")
	errNoMemory     = errorf(452, smtp.EnhancedCode{4, 3, 1}, "Insufficient system storage, please try again later")
	errReadFailed   = errorf(451, smtp.EnhancedCode{4, 4, 2}, "Connection problem while receiving data, please try again")
	errAuthTooMany  = errorf(421, smtp.EnhancedCode{4, 7, 0}, "Too many failed authentication attempts")
	errAuthLocked   = errorf(454, smtp.EnhancedCode{4, 7, 0}, "Temporary authentication failure, too many failed attempts; try again later")
	errEmpty        = errorf(554, smtp.EnhancedCode{5, 6, 0}, "Message is empty")
	errNeedTLSAuth  = errorf(538, smtp.EnhancedCode{5, 7, 11}, "Encryption required for requested authentication mechanism")
)
