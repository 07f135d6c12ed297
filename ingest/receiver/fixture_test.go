package receiver

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestFixtureSessions replays the client side of the sessions in
// fixtures/smtp in one write each (PIPELINING) and checks every reply
// code and the stored message.
func TestFixtureSessions(t *testing.T) {
	files, err := filepath.Glob("../../fixtures/smtp/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	h := newHarness(t, harnessOpt{})
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			in, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(strings.TrimSuffix(f, ".txt") + ".replies")
			if err != nil {
				t.Fatal(err)
			}
			nc, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := nc.Write(in); err != nil {
				t.Fatal(err)
			}
			r := bufio.NewReader(nc)
			for i, w := range strings.Fields(string(want)) {
				code := readReply(t, r)
				if strconv.Itoa(code) != w {
					t.Errorf("reply %d: %d, want %s", i, code, w)
				}
			}
		})
	}
	raw, ok := h.rawByMessageID("pipelined-1@customer.example")
	if !ok {
		t.Fatal("pipelined message not stored")
	}
	body := raw.data[strings.Index(raw.data, "\r\n\r\n")+4:]
	if body != ".a line that starts with a dot\r\n.\r\nCafé crème, 8-bit body.\r\n" {
		t.Errorf("body not un-stuffed byte for byte: %q", body)
	}
	if !strings.Contains(raw.data, "Subject: =?UTF-8?Q?Caf=C3=A9?= and dots\r\n") {
		t.Error("header changed")
	}
	// empty-data.txt: the refused messages left nothing; the one that
	// says nothing is kept raw, failed, and is no ticket.
	var stored, tickets int
	if err := h.db().QueryRow(`SELECT COUNT(*) FROM raw_messages WHERE envelope LIKE '%nobody@customer.example%'`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if err := h.db().QueryRow(`SELECT COUNT(*) FROM tickets t JOIN contacts c ON c.id = t.requester_id WHERE c.email IN ('nobody@customer.example', 'unknown@invalid')`).Scan(&tickets); err != nil {
		t.Fatal(err)
	}
	if raw, ok := h.rawByMessageID("empty-3@customer.example"); !ok || raw.state != "failed" || stored != 1 || tickets != 0 {
		t.Errorf("empty-data: content-free mail stored %v state %q; %d raw messages from the sender (want 1), %d tickets (want 0)", ok, raw.state, stored, tickets)
	}
}

// readReply reads one (possibly multi-line) SMTP reply and returns its
// code.
func readReply(t *testing.T, r *bufio.Reader) int {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading reply: %v (got %q)", err, line)
		}
		if len(line) < 4 {
			t.Fatalf("short reply line %q", line)
		}
		if line[3] == ' ' {
			code, _ := strconv.Atoi(line[:3])
			return code
		}
	}
}
