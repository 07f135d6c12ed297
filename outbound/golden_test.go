package outbound

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/deskmail/deskmail/store"
	"github.com/emersion/go-message/mail"
)

var update = flag.Bool("update", false, "rewrite the golden files in fixtures/outbound")

// seeded is a deterministic random source for Message-IDs.
type seeded struct{ r *rand.Rand }

func (s seeded) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(s.r.Uint32())
	}
	return len(p), nil
}

// agentToken hides the day in agent reply tokens, the one part of a
// rendered mail that depends on the real clock.
var agentToken = regexp.MustCompile(`\+a(\d+)\.\d+\.[a-z2-7]{10}@`)

// TestGolden renders every kind of mail in each built-in language and compares
// it byte for byte with fixtures/outbound/<lang>/*.eml (run with
// -update to rewrite them after a deliberate change).
func TestGolden(t *testing.T) {
	for _, lang := range []string{"en", "fr", "de", "es"} {
		t.Run(lang, func(t *testing.T) {
			e := newEnv(t, "", "")
			channel := map[string]string{"en": "acme", "fr": "acmefr", "de": "acmede", "es": "acmees"}[lang]
			for i := range e.cfg.Channels {
				e.cfg.Channels[i].Send.ClosingMail = new(bool)
				*e.cfg.Channels[i].Send.ClosingMail = true
			}
			o, err := New(e.cfg, e.signer)
			if err != nil {
				t.Fatal(err)
			}
			clock := time.Date(2026, 3, 2, 14, 5, 0, 0, time.UTC)
			o.now = func() time.Time { return clock }
			o.random = seeded{rand.New(rand.NewPCG(1, 2))}
			e.o = o

			at := time.Date(2026, 3, 2, 9, 12, 0, 0, time.UTC)
			subject := map[string]string{"en": "Printer on floor 2 prints blank pages", "fr": "TR: L'imprimante du 2ᵉ étage imprime des pages blanches",
				"de": "AW: Drucker im 2. Stock druckt leere Seiten", "es": "RE: La impresora de la 2.ª planta imprime páginas en blanco"}[lang]
			body := map[string]string{
				"en": "Hello,\n\nSince this morning the printer on floor 2 only prints blank pages.\nCould you have a look? <Thanks>\n\nAnn",
				"fr": "Bonjour,\n\nDepuis ce matin, l'imprimante du 2ᵉ étage n'imprime que des pages blanches.\nPourriez-vous regarder ? « Merci » & bonne journée\n\nÉloïse",
				"de": "Hallo,\n\nseit heute Morgen druckt der Drucker im 2. Stock nur leere Seiten.\nKönnten Sie nachsehen? „Danke“ & schönen Tag\n\nJürgen",
				"es": "Hola:\n\nDesde esta mañana la impresora de la 2.ª planta solo imprime páginas en blanco.\n¿Podrían revisarla? «Gracias» & buen día\n\nMaría José",
			}[lang]
			name := map[string]string{"en": "Ann Smith", "fr": "Éloïse Bérénice", "de": "Jürgen Groß", "es": "María José Núñez"}[lang]
			tk, conv := e.newTicket(incoming{channel: channel, from: "requester@customer.test", name: name, subject: subject,
				msgID: "orig-1@customer.test", body: body, at: at})
			e.enqueue(Event{Kind: TicketCreated, Ticket: tk, Conversation: conv, Channel: channel, InReplyTo: conv.MessageID})

			reply := map[string]string{
				"en": "Hello Ann,\n\nThe toner cartridge was empty; I have replaced it. The driver update is attached in case the problem comes back.\n\nBest regards,\nAlice",
				"fr": "Bonjour Éloïse,\n\nLa cartouche de toner était vide : je l'ai remplacée. Vous trouverez ci-joint la mise à jour du pilote, au cas où le problème reviendrait.\n\nBien cordialement,\nAlice",
				"de": "Hallo Herr Groß,\n\ndie Tonerkartusche war leer; ich habe sie ersetzt. Das Treiber-Update hängt an, falls das Problem wiederkommt.\n\nViele Grüße\nAlice",
				"es": "Hola, María José:\n\nEl cartucho de tóner estaba vacío; lo he cambiado. Le adjunto la actualización del controlador por si el problema vuelve.\n\nUn saludo,\nAlice",
			}[lang]
			agent, answer := e.agentReply(tk, "alice@agents.test", reply,
				[]store.Attachment{{Filename: "pilote-imprimante.pdf", ContentType: "application/pdf", Content: []byte("%PDF-1.4 fake")}}, at.Add(3*time.Hour))
			e.enqueue(Event{Kind: AgentReplied, Ticket: tk, Conversation: answer, Agent: agent, Channel: channel, InReplyTo: conv.MessageID})
			tk.Status, tk.Category, tk.StatusName = 4, "resolved", "Resolved"
			e.enqueue(Event{Kind: TicketResolved, Ticket: tk, Channel: channel})
			e.enqueue(Event{Kind: CommandError, Ticket: tk, Agent: agent, Channel: channel, InReplyTo: "agent-1@agents.test",
				ErrorText: `line 1: "#priority extreme": unknown priority "extreme" (low, medium, high, urgent)`})

			rows := e.outbox(store.OutboxFilter{WithRaw: true})
			if len(rows) != 6 {
				t.Fatalf("rows: %s", summarize(rows))
			}
			dir := filepath.Join("..", "fixtures", "outbound", lang)
			for i, r := range rows {
				local, _, _ := strings.Cut(r.RcptTo[0], "@")
				file := filepath.Join(dir, fmt.Sprintf("%02d-%s-%s.eml", i+1, r.Kind, local))
				got := agentToken.ReplaceAll(r.Raw, []byte("+a${1}.DAY.agenttoken@"))
				if *update {
					if err := os.MkdirAll(dir, 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(file, got, 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(file)
				if err != nil {
					t.Fatalf("%v (run go test ./outbound -run TestGolden -update)", err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s differs from the rendered mail (run with -update if the change is deliberate):\n%s", file, got)
				}
				// Every golden parses back as MIME.
				parse(t, got)
			}
		})
	}
}

// BenchmarkDeliver5000 queues 5,000 mails (1,000 tickets × a
// confirmation and four notifications, so order per ticket applies)
// and measures delivery to a loopback go-smtp sink over 4 connections.
func BenchmarkDeliver5000(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		s := newSink(b)
		e := newEnv(b, s.addr, "")
		const tickets = 1000
		err := e.st.Write(context.Background(), func(tx *store.Tx) error {
			ch := e.chIDs["acme"]
			for i := range tickets {
				c, _, err := tx.EnsureContact(fmt.Sprintf("c%d@customer.test", i), "Customer")
				if err != nil {
					return err
				}
				tk := &store.Ticket{Subject: fmt.Sprint("ticket ", i), Status: 2, RequesterID: c.ID, ChannelID: &ch}
				if err := tx.CreateTicket(tk); err != nil {
					return err
				}
				conv, err := e.addIncoming(tx, tk.ID, c.ID, incoming{from: c.Email, subject: tk.Subject, msgID: fmt.Sprintf("b%d@customer.test", i), body: "help"})
				if err != nil {
					return err
				}
				full, err := tx.Ticket(tk.ID)
				if err != nil {
					return err
				}
				if err := e.o.Enqueue(tx, Event{Kind: TicketCreated, Ticket: full, Conversation: conv}); err != nil {
					return err
				}
				if err := e.o.Enqueue(tx, Event{Kind: CustomerReplied, Ticket: full, Conversation: conv}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		w := e.o.Worker(e.st, nil)
		w.conns = 4
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		b.StartTimer()
		start := time.Now()
		go func() { done <- w.Run(ctx) }()
		s.wait(5*tickets, 5*time.Minute)
		for {
			var st store.OutboxStats
			if err := e.st.Read(context.Background(), func(tx *store.Tx) error { st, err = tx.OutboxStats(); return err }); err != nil {
				b.Fatal(err)
			}
			if st.Queued == 0 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		sent := 0
		for _, r := range e.outbox(store.OutboxFilter{}) {
			if r.State == store.OutboxSent {
				sent++
			}
		}
		if sent != 5*tickets || len(s.all()) != 5*tickets {
			b.Fatalf("sent %d, received %d", sent, len(s.all()))
		}
		b.ReportMetric(float64(5*tickets)/elapsed.Seconds(), "msg/s")
		b.StartTimer()
	}
}

// BenchmarkBuildMIME renders a notification-sized mail: 5 KB of text
// with a few accented words, and its HTML.
func BenchmarkBuildMIME(b *testing.B) {
	var h mail.Header
	h.SetSubject("Nouveau ticket [#1] : problème de connexion")
	h.SetAddressList("To", []*mail.Address{{Name: "Alice", Address: "alice@acme.test"}})
	text := strings.Repeat("facture imprimante passe connexion problème refund livraison account problem commande\n", 60)
	html := "<div>" + strings.ReplaceAll(text, "\n", "<br>\n") + "</div>"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := buildMIME(h, "bench@deskmail.test", text, html, nil); err != nil {
			b.Fatal(err)
		}
	}
}
