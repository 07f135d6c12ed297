package receiver

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certLoader serves the configured certificate and reloads it when the
// files change (certificate renewals need no restart). Files are
// checked at most once a minute; a renewal that fails to load keeps
// the previous certificate and is logged.
type certLoader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string
	checked time.Time
}

func newCertLoader(certFile, keyFile string, log *slog.Logger) (*certLoader, error) {
	l := &certLoader{certFile: certFile, keyFile: keyFile, log: log}
	if err := l.load(); err != nil {
		return nil, err
	}
	return l, nil
}

// stampOf identifies the current version of the files.
func (l *certLoader) stampOf() (string, error) {
	var s string
	for _, f := range []string{l.certFile, l.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		s += fmt.Sprintf("%s:%d:%d;", f, fi.Size(), fi.ModTime().UnixNano())
	}
	return s, nil
}

func (l *certLoader) load() error {
	stamp, err := l.stampOf()
	if err != nil {
		return fmt.Errorf("receiver: TLS certificate: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(l.certFile, l.keyFile)
	if err != nil {
		return fmt.Errorf("receiver: load TLS certificate %s: %w", l.certFile, err)
	}
	l.cert, l.stamp, l.checked = &cert, stamp, time.Now()
	return nil
}

// GetCertificate implements tls.Config.GetCertificate.
func (l *certLoader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.checked) >= time.Minute {
		l.checked = time.Now()
		if stamp, err := l.stampOf(); err == nil && stamp != l.stamp {
			if err := l.load(); err != nil {
				l.log.Error("smtp: new TLS certificate not loaded; keeping the previous one", "err", err.Error())
			} else {
				l.log.Info("smtp: TLS certificate reloaded", "file", l.certFile)
			}
		}
	}
	return l.cert, nil
}
