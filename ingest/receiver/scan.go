package receiver

import (
	"bytes"
	"errors"
	"io"
)

var (
	errContentLine    = errors.New("receiver: line too long")
	errContentHeaders = errors.New("receiver: too many header fields")
	errContentBudget  = errors.New("receiver: too many message bytes buffered")
)

// contentScanner passes a message body through while checking the
// line length and the number of header fields as the bytes stream by,
// so a message that breaks a limit is refused without being kept.
// go-smtp enforces the line limit on the connection for DATA; this
// check also covers BDAT chunks, which go-smtp reads without it.
type contentScanner struct {
	r          io.Reader
	maxLine    int // octets per line, CRLF excluded; 0: no limit
	maxHeaders int // header fields; 0: no limit

	line    int  // octets in the current line so far
	inBody  bool // the empty line ending the header was seen
	headers int
	lineCR  bool // the current line so far is exactly "\r"
	err     error

	// budget counts the memory all sessions' messages cost; this
	// scanner takes memoryCost per byte it passes through (beyond
	// what the session reserved for an announced SIZE, held from the
	// start), and release gives it all back.
	budget *budget
	held   int64 // cost taken from budget
	cost   int64 // cost of the bytes passed so far
}

// release returns the bytes this scanner counted against the budget.
func (s *contentScanner) release() {
	if s.budget != nil && s.held > 0 {
		s.budget.release(s.held)
		s.held = 0
	}
}

// Read implements io.Reader.
func (s *contentScanner) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	// Small reads keep the budget accounting close to the bytes
	// actually received (go-smtp's reader fills the whole buffer).
	if len(p) > 4096 {
		p = p[:4096]
	}
	n, err := s.r.Read(p)
	if s.budget != nil && n > 0 {
		s.cost += int64(n) * memoryCost
		if need := s.cost - s.held; need > 0 {
			if !s.budget.take(need) {
				s.err = errContentBudget
				return 0, s.err
			}
			s.held += need
		}
	}
	buf := p[:n]
	for i := 0; i < len(buf); i++ {
		c := buf[i]
		if s.inBody && c != '\n' {
			// Fast path for the body: only line lengths matter.
			j := bytes.IndexByte(buf[i:], '\n')
			if j < 0 {
				j = len(buf) - i
			}
			s.line += j
			if s.maxLine > 0 && s.line > s.maxLine+1 {
				s.err = errContentLine
				return 0, s.err
			}
			i += j - 1
			continue
		}
		if c == '\n' {
			if !s.inBody && (s.line == 0 || s.lineCR && s.line == 1) {
				s.inBody = true
			}
			s.line, s.lineCR = 0, false
			continue
		}
		if s.line == 0 && !s.inBody {
			switch c {
			case ' ', '\t', '\r':
				// Continuation line, or a CR that may start the empty
				// line ending the header.
			default:
				s.headers++
				if s.maxHeaders > 0 && s.headers > s.maxHeaders {
					s.err = errContentHeaders
					return 0, s.err
				}
			}
			s.lineCR = c == '\r'
		} else {
			s.lineCR = false
		}
		s.line++
		// The limit counts the CR of a CRLF line ending as part of the
		// line ending, not of the line.
		if s.maxLine > 0 && s.line > s.maxLine+1 {
			s.err = errContentLine
			return 0, s.err
		}
	}
	return n, err
}
