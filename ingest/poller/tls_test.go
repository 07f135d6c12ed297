package poller

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// selfSigned makes a certificate for 127.0.0.1 and a pool trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "imap.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// tlsServer starts imapmemserver with implicit TLS or STARTTLS.
func tlsServer(t *testing.T, implicit bool, cert tls.Certificate) *backend {
	mem := imapmemserver.New()
	u := imapmemserver.NewUser(testUser, testPassword)
	u.Create("INBOX", nil)
	mem.AddUser(u)
	tc := &tls.Config{Certificates: []tls.Certificate{cert}}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &testSession{Session: mem.NewSession()}, nil, nil
		},
		TLSConfig: tc,
		Caps:      imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapMove: {}, imap.CapUIDPlus: {}},
		Logger:    log.New(io.Discard, "", 0),
	})
	var ln net.Listener
	var err error
	if implicit {
		ln, err = tls.Listen("tcp", "127.0.0.1:0", tc)
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	mode := "starttls"
	if implicit {
		mode = "implicit"
	}
	return &backend{host: "127.0.0.1", port: ln.Addr().(*net.TCPAddr).Port, user: testUser, pass: testPassword, tls: mode, mem: u}
}

func TestTLSModes(t *testing.T) {
	cert, pool := selfSigned(t)
	for _, implicit := range []bool{true, false} {
		b := tlsServer(t, implicit, cert)
		t.Run(b.tls, func(t *testing.T) {
			h := newHarness(t, b)
			h.opts.TLSConfig = &tls.Config{RootCAs: pool}
			h.start()
			eventually(t, 10*time.Second, "a successful poll over TLS", func() bool {
				hl := h.health()
				return hl != nil && hl.LastOKAt != nil
			})
			h.stop()

			// Without the CA the certificate is refused, and health
			// says so.
			h2 := newHarness(t, b)
			h2.start()
			eventually(t, 10*time.Second, "a certificate error in health", func() bool {
				hl := h2.health()
				return hl != nil && strings.Contains(hl.LastError, "certificate")
			})
			h2.stop()
			t.Logf("health: %q", h2.health().LastError)
		})
	}
}
