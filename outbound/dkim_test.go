package outbound

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/deskmail/deskmail/config"
	"github.com/deskmail/deskmail/store"
)

// dkimKeys writes an RSA key for acme.test and an Ed25519 key for
// acme.fr and returns the configuration entries and the TXT records a
// verifier would find in DNS.
func dkimKeys(t testing.TB) ([]config.DKIMConfig, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaFile := filepath.Join(dir, "acme.test.pem")
	os.WriteFile(rsaFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}), 0o600)
	rsaPub, _ := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	edPub, ek, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(ek)
	edFile := filepath.Join(dir, "acme.fr.pem")
	os.WriteFile(edFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	entries := []config.DKIMConfig{
		{Domain: "acme.test", Selector: "s2026", PrivateKeyFile: rsaFile, Headers: config.DefaultDKIMHeaders},
		{Domain: "acme.fr", Selector: "ed1", PrivateKeyFile: edFile, Headers: config.DefaultDKIMHeaders},
	}
	txt := map[string]string{
		"s2026._domainkey.acme.test": "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(rsaPub),
		"ed1._domainkey.acme.fr":     "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(edPub),
	}
	return entries, txt
}

func verifyDKIM(t testing.TB, raw []byte, txt map[string]string) []*dkim.Verification {
	t.Helper()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{LookupTXT: func(domain string) ([]string, error) {
		if r, ok := txt[domain]; ok {
			return []string{r}, nil
		}
		return nil, fmt.Errorf("no TXT record for %s", domain)
	}})
	if err != nil {
		t.Fatalf("dkim verify: %v", err)
	}
	return vs
}

// TestDKIMSignedAtEnqueue: mail is signed when it is queued, the
// stored text is exactly what reaches the relay, and the signature
// verifies against the published key (RSA and Ed25519).
func TestDKIMSignedAtEnqueue(t *testing.T) {
	s := newSink(t)
	e := newEnv(t, s.addr, "")
	entries, txt := dkimKeys(t)
	e.cfg.Outbound.DKIM = entries
	o, err := New(e.cfg, e.signer)
	if err != nil {
		t.Fatal(err)
	}
	e.o = o
	tk, conv := e.newTicket(incoming{from: "ann@customer.test", name: "Ann", subject: "Printer broken", msgID: "k1@customer.test", body: "x"})
	e.enqueue(Event{Kind: TicketCreated, Ticket: tk, Conversation: conv, InReplyTo: conv.MessageID})
	tkFR, convFR := e.newTicket(incoming{channel: "acmefr", from: "eloise@client.fr", name: "Éloïse", subject: "Problème d'accès",
		msgID: "k2@client.fr", body: "x"})
	e.enqueue(Event{Kind: TicketCreated, Ticket: tkFR, Conversation: convFR, Channel: "acmefr", InReplyTo: convFR.MessageID})
	stored := map[string][]byte{}
	for _, r := range e.outbox(store.OutboxFilter{WithRaw: true}) {
		stored[r.MessageID] = r.Raw
		if !bytes.HasPrefix(r.Raw, []byte("DKIM-Signature: ")) {
			t.Errorf("%s %s not signed:\n%.300s", r.Kind, r.MessageID, r.Raw)
		}
	}
	run(t, e.fastWorker())
	got := s.wait(6, 10*time.Second)
	for _, m := range got {
		if !bytes.Equal(m.data, stored[m.msgID]) {
			t.Errorf("%s: sent text differs from the stored text", m.msgID)
		}
		vs := verifyDKIM(t, m.data, txt)
		if len(vs) != 1 || vs[0].Err != nil {
			t.Fatalf("%s: verification %+v", m.msgID, vs[0])
		}
		want := "acme.test"
		if strings.Contains(m.from, "acme.fr") {
			want = "acme.fr"
		}
		if vs[0].Domain != want {
			t.Errorf("%s signed by %s, want %s", m.msgID, vs[0].Domain, want)
		}
		for _, h := range []string{"from", "to", "subject", "date", "message-id", "references", "reply-to", "content-type"} {
			if !slices.ContainsFunc(vs[0].HeaderKeys, func(k string) bool { return strings.EqualFold(k, h) }) {
				t.Errorf("%s: %s not signed (h=%v)", m.msgID, h, vs[0].HeaderKeys)
			}
		}
		// A changed subject breaks the signature.
		tampered := bytes.Replace(m.data, []byte("Subject: "), []byte("Subject: [SPAM] "), 1)
		if vs := verifyDKIM(t, tampered, txt); vs[0].Err == nil {
			t.Errorf("%s: tampered mail still verifies", m.msgID)
		}
	}
	// The signature stays valid after the mail is parsed back.
	parse(t, got[0].data)
}

func TestDKIMDomainChoice(t *testing.T) {
	e := newEnv(t, "", "")
	entries, _ := dkimKeys(t)
	var err error
	if e.o.dkim, err = loadDKIM(entries); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		addrs []string
		want  string
	}{
		{[]string{"support@acme.test"}, "acme.test"},
		{[]string{"support@EU.Acme.Test"}, "acme.test"},               // parent domain
		{[]string{"alice@agents.test", "support@acme.fr"}, "acme.fr"}, // agent's From without a key: the channel's
		{[]string{"alice@agents.test", "support@other.test"}, ""},
		{[]string{"x@test"}, ""},
	} {
		got := ""
		if o := e.o.dkimFor(c.addrs...); o != nil {
			got = o.Domain
		}
		if got != c.want {
			t.Errorf("dkimFor(%v) = %q, want %q", c.addrs, got, c.want)
		}
	}
	// Suppressed mail is stored unsigned (it never leaves).
	e.o.now = time.Now
	tk, conv := e.newTicket(incoming{from: "noreply@shop.test", subject: "x", msgID: "k3@shop.test", body: "x"})
	e.enqueue(Event{Kind: TicketCreated, Ticket: tk, Conversation: conv})
	for _, r := range e.outbox(store.OutboxFilter{TicketID: tk.ID, WithRaw: true}) {
		if signed := bytes.HasPrefix(r.Raw, []byte("DKIM-Signature:")); signed == (r.State == store.OutboxSuppressed) {
			t.Errorf("%s %s: signed=%v", r.Kind, r.State, signed)
		}
	}
}

// BenchmarkDKIMSign measures signing one rendered confirmation, the
// cost DKIM adds to Enqueue (inside the ingest transaction).
func BenchmarkDKIMSign(b *testing.B) {
	e := newEnv(b, "", "")
	entries, _ := dkimKeys(b)
	e.cfg.Outbound.DKIM = entries
	o, err := New(e.cfg, e.signer)
	if err != nil {
		b.Fatal(err)
	}
	e.o = o
	tk, conv := e.newTicket(incoming{from: "ann@customer.test", subject: "Printer broken", msgID: "bk@customer.test", body: strings.Repeat("text ", 400)})
	e.enqueue(Event{Kind: TicketCreated, Ticket: tk, Conversation: conv})
	raw := e.outbox(store.OutboxFilter{Kind: KindConfirmation, WithRaw: true})[0].Raw
	for _, c := range []struct{ name, from string }{{"rsa2048", "support@acme.test"}, {"ed25519", "support@acme.fr"}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := o.dkimSign(raw, c.from); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
