package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/jhillyerd/enmime/v2"
)

const languageConfig = `database: deskmail.db
smtp:
  hostname: deskmail.acme.test
  rate_per_minute: 100000
threading:
  secret: "e2e language secret"
agents:
  - {email: alice@acme.test, name: Alice Agent, role: admin}
outbound:
  relay: %s
  tls: none
  templates_dir: %s
channels:
  - name: support
    addresses: [support@acme.test]
  - name: italia
    addresses: [italia@acme.test]
    language: it
`

// TestConfirmationLanguage: the confirmation a customer gets is in the
// language of their mail's Content-Language (German, Spanish built in),
// else the channel's — here Italian, a language that only a folder of
// templates_dir adds (its missing templates fall back to English).
// Mail in over SMTP to the built binary, out at a relay sink.
func TestConfirmationLanguage(t *testing.T) {
	forEachDatabase(t, confirmationLanguageOn)
}

func confirmationLanguageOn(t *testing.T, db string) {
	dir := t.TempDir()
	tmpl := writeTemplates(t, dir, "it", map[string]string{
		"confirmation.txt.tmpl": `{{define "subject"}}{{.ReplySubject}}{{end}}Buongiorno{{with .Requester.Name}} {{.}}{{end}},

grazie per averci scritto: la sua richiesta è registrata come {{.Token}}.

Cordiali saluti,
{{.Channel.DisplayName}}
`,
		"confirmation.html.tmpl": `<p>Grazie per averci scritto ({{.Token}}).</p>`,
	})
	sink := newRelaySink(t)
	cfg := writeConfigOn(t, dir, db, fmt.Sprintf(languageConfig, sink.addr, tmpl))
	bin := buildBinary(t)
	deskmailCmd(t, bin, dir, "check-config", cfg) // fails the test unless it exits 0: "it" is a language now
	proc, smtpAddr, _ := startServe(t, bin, dir, "--config", cfg, "--smtp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")

	for _, tc := range []struct {
		from, to, header, lang, phrase string
	}{
		{"kunde@firma.test", "support@acme.test", "Content-Language: de-DE\n", "de", "vielen Dank für Ihre Nachricht"},
		{"cliente@empresa.test", "support@acme.test", "Content-Language: es\n", "es", "Gracias por ponerse en contacto"},
		{"customer@corp.test", "support@acme.test", "", "en", "Thank you for contacting"},
		{"cliente@azienda.test", "italia@acme.test", "", "it", "grazie per averci scritto"},
		{"client@societe.test", "italia@acme.test", "Content-Language: fr\n", "fr", "Merci d'avoir contacté"},
	} {
		msg := mailText(tc.from, tc.to, "Question from "+tc.from, "lang-"+tc.from, tc.header, "Hello, a question.")
		if err := smtpSend(smtpAddr, tc.from, tc.to, strings.ReplaceAll(msg, "\n", "\r\n")); err != nil {
			t.Fatalf("SMTP: %v\n%s", err, proc.stderr.String())
		}
		got := sink.waitMails(t, tc.from, 1)[0]
		env, err := enmime.ReadEnvelope(bytes.NewReader(got.Data))
		if err != nil {
			t.Fatal(err)
		}
		if cl := env.GetHeader("Content-Language"); cl != tc.lang || !strings.Contains(env.Text, tc.phrase) {
			t.Errorf("confirmation to %s: Content-Language %q, text %q; want %s with %q", tc.from, cl, env.Text, tc.lang, tc.phrase)
		}
	}
}
