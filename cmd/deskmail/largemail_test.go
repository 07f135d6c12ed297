package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/deskmail/deskmail/config"
)

// largeMail returns a mail from `from` with one attachment of content,
// base64 in 76-column lines as mail clients write it.
func largeMail(from, to, id string, content []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: Big file %s\r\nMessage-ID: <%s>\r\n", from, to, id, id)
	b.WriteString("Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n")
	b.WriteString("--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe file is attached.\r\n")
	b.WriteString("--b1\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"big.bin\"\r\n")
	b.WriteString("Content-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(content)
	b.Grow(len(enc) + len(enc)/76*2 + 64)
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteString("\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc)
	b.WriteString("\r\n--b1--\r\n")
	return b.Bytes()
}

// apiGet fetches path from the daemon's API with key.
func apiGet(t *testing.T, httpAddr, key, path string) []byte {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+httpAddr+path, nil)
	req.SetBasicAuth(key, "X")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %v %s %.300s", path, err, resp.Status, b)
	}
	return b
}

// TestLargeAttachmentByDefault sends a 20 MiB attachment (~28 MB of
// base64) over SMTP to `deskmail serve` running on its defaults: EHLO
// advertises SIZE with the default limit, the mail is accepted, and
// the attachment read back through the API has the same SHA-256.
func TestLargeAttachmentByDefault(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	p, smtpAddr, httpAddr := startServe(t, bin, dir, "--smtp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
	deskmailCmd(t, bin, dir, "agents", "add", "alice@example.com", "--name", "Alice", "--role", "admin", "--db", "deskmail.db")
	key := strings.TrimSpace(deskmailCmd(t, bin, dir, "agents", "key", "alice@example.com", "--db", "deskmail.db"))

	content := make([]byte, config.DefaultMaxAttachmentBytes)
	rand.Read(content)
	want := sha256.Sum256(content)
	msg := largeMail("carol@customer.example", "support@localhost", "big-1@customer.example", content)

	c, err := smtp.Dial(smtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	ok, size := c.Extension("SIZE")
	if !ok || size != strconv.Itoa(config.DefaultMaxMessageBytes) {
		t.Fatalf("EHLO SIZE = %v %q, want %d", ok, size, config.DefaultMaxMessageBytes)
	}
	if err := c.Mail("carol@customer.example", &smtp.MailOptions{Size: int64(len(msg))}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("support@localhost", nil); err != nil {
		t.Fatal(err)
	}
	if err := sendData(c, string(msg)); err != nil {
		t.Fatalf("DATA of %d bytes: %v\n%s", len(msg), err, p.stderr.String())
	}
	c.Quit()

	// The first mail is the ticket's description (Freshdesk's shape).
	var tk struct {
		Attachments []struct {
			Name          string `json:"name"`
			Size          int64  `json:"size"`
			AttachmentURL string `json:"attachment_url"`
		} `json:"attachments"`
	}
	if err := json.Unmarshal(apiGet(t, httpAddr, key, "/api/v2/tickets/1"), &tk); err != nil {
		t.Fatal(err)
	}
	if len(tk.Attachments) != 1 {
		t.Fatalf("ticket attachments: %+v", tk.Attachments)
	}
	a := tk.Attachments[0]
	_, idPath, found := strings.Cut(a.AttachmentURL, "/api/v2/attachments/")
	if !found || a.Name != "big.bin" || a.Size != int64(len(content)) {
		t.Fatalf("attachment: %+v", a)
	}
	got := sha256.Sum256(apiGet(t, httpAddr, key, "/api/v2/attachments/"+idPath))
	if got != want {
		t.Fatalf("stored attachment SHA-256 %s, sent %s", hex.EncodeToString(got[:]), hex.EncodeToString(want[:]))
	}
	p.stop()
}
