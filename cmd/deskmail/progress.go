package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

// progress shows how far a long command is — count, total, rate and
// time left —
// on one line of a terminal, rewritten in place at most five times a
// second. When w is not a terminal (a pipe, a file, the journal, a
// test) it prints nothing, so scripts and logs see only the command's
// real output.
type progress struct {
	w     io.Writer
	on    bool
	what  string // "messages"
	total int    // 0 when unknown
	n     int
	start time.Time
	shown time.Time
	now   func() time.Time
}

// newProgress starts a progress line on w for a command that handles
// total things (0 when not known).
func newProgress(w io.Writer, what string, total int) *progress {
	p := &progress{w: w, on: isTerminal(w), what: what, total: total, now: time.Now}
	p.start = p.now()
	return p
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// add counts k more things done.
func (p *progress) add(k int) {
	p.n += k
	if !p.on {
		return
	}
	if now := p.now(); now.Sub(p.shown) >= 200*time.Millisecond {
		p.shown = now
		fmt.Fprintf(p.w, "\r\033[K%s", p.line(now))
	}
}

// status shows a line of its own (for work without a count, such as a
// backup's bytes written so far).
func (p *progress) status(text string) {
	if p.on {
		fmt.Fprintf(p.w, "\r\033[K%s", text)
	}
}

// done clears the progress line.
func (p *progress) done() {
	if p.on {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

func (p *progress) line(now time.Time) string {
	rate := ""
	secs := now.Sub(p.start).Seconds()
	if secs > 0 {
		rate = fmt.Sprintf(", %.0f/s", float64(p.n)/secs)
	}
	if p.total > 0 {
		left := ""
		if p.n > 0 && p.n < p.total && secs > 0 {
			eta := time.Duration(secs * float64(p.total-p.n) / float64(p.n) * float64(time.Second))
			left = fmt.Sprintf(", %s left", eta.Round(time.Second))
		}
		return fmt.Sprintf("%d of %d %s (%d%%)%s%s", p.n, p.total, p.what, p.n*100/p.total, rate, left)
	}
	return fmt.Sprintf("%d %s%s", p.n, p.what, rate)
}
