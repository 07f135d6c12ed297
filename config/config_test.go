package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExampleIsValid(t *testing.T) {
	t.Setenv("DESKMAIL_SECRET", "s")
	t.Setenv("IMAP_FACTURATION_PASSWORD", "p")
	t.Setenv("DESKMAIL_SMTP_RELAY_PASSWORD", "p")
	t.Setenv("DESKMAIL_RELAY_PASSWORD", "x")
	c, err := Load("../deskmail.example.yaml")
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	if len(c.Channels) != 2 || c.Channels[1].IMAP == nil || c.Channels[1].IMAP.After != "move" {
		t.Fatalf("channels not read: %+v", c.Channels)
	}
	if c.Pipelines[0].ClosedReply != "new_ticket" || len(c.AllStatuses()) != 6 {
		t.Fatalf("pipelines/statuses not read")
	}
	if v, _ := c.Outbound.Password.Value(); v != "x" {
		t.Fatalf("env secret = %q", v)
	}
	if s := c.Channels[1].IMAP.Password.String(); strings.Contains(s, "p") && !strings.HasPrefix(s, "env:") {
		t.Fatalf("secret shown: %s", s)
	}
	// The example states the size defaults exactly.
	d := Default()
	if c.SMTP.MaxMemory != d.SMTP.MaxMemory {
		t.Errorf("example max_memory %d, default %d", c.SMTP.MaxMemory, d.SMTP.MaxMemory)
	}
	if c.SMTP.MaxMessageBytes != d.SMTP.MaxMessageBytes || c.MaxAttachmentBytes != d.MaxAttachmentBytes {
		t.Errorf("example max_message_bytes %d, max_attachment_bytes %d; defaults %d, %d",
			c.SMTP.MaxMessageBytes, c.MaxAttachmentBytes, d.SMTP.MaxMessageBytes, d.MaxAttachmentBytes)
	}
}

func TestDefaults(t *testing.T) {
	c := Default()
	if ps := c.Validate(); len(ps) > 0 {
		t.Fatalf("defaults invalid: %v", ps)
	}
	if c.SMTP.Listen != "127.0.0.1:2525" || c.Channels[0].Addresses[0] != DefaultAddress || c.Database != "deskmail.db" {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	// A 20 MB attachment in base64 (~27.4 MB) fits the default message
	// size; the attachment limit is 20 MiB.
	if c.SMTP.MaxMessageBytes < 36<<20 || c.MaxAttachmentBytes != 20<<20 {
		t.Errorf("max_message_bytes %d, max_attachment_bytes %d", c.SMTP.MaxMessageBytes, c.MaxAttachmentBytes)
	}
}

func TestProblemsHaveLines(t *testing.T) {
	src := `database: x.db
bogus_key: 1
statuses:
  - {code: 3, name: Mine, category: pending}
  - {code: 6, name: A, category: nope}
  - {code: 6, name: B, category: open}
pipelines:
  - name: p
    statuses: [2, 3, 4]
    closed_reply: sometimes
agents:
  - {email: support@example.com, name: Loop}
channels:
  - name: a
    pipeline: p
    addresses: [support@example.com]
  - name: b
    pipeline: missing
    addresses: [SUPPORT@example.com]
`
	// The unknown key does not hide the problems after it: one run
	// reports them all, sorted by line.
	_, err := Parse("c.yaml", []byte(src))
	ps, ok := err.(Problems)
	if !ok {
		t.Fatalf("want Problems, got %T %v", err, err)
	}
	if !strings.HasPrefix(ps.Error(), "c.yaml:2: bogus_key: unknown option") {
		t.Fatalf("unknown key not reported first with its line: %v", err)
	}
	src = strings.Replace(src, "bogus_key: 1\n", "", 1)
	_, err = Parse("c.yaml", []byte(src))
	ps, ok = err.(Problems)
	if !ok {
		t.Fatalf("want Problems, got %T %v", err, err)
	}
	want := []string{
		"c.yaml:3: statuses[0].code: status code 3 is reserved",
		"c.yaml:4: statuses[1].category: \"nope\" is not a category",
		"c.yaml:5: statuses[2].code: status code 6 is also used at line 4",
		"c.yaml:8: pipelines[0].statuses: no status of category closed",
		"c.yaml:9: pipelines[0].closed_reply: \"sometimes\" must be new_ticket, reopen or reopen_within",
		"c.yaml:15: channels[0].addresses[0]: address support@example.com is both a support address and an agent",
		"c.yaml:17: channels[1].pipeline: pipeline \"missing\" is not declared",
		"c.yaml:18: channels[1].addresses[0]: address SUPPORT@example.com belongs to channel \"a\" and channel \"b\"",
	}
	got := ps.Error()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in:\n%s", w, got)
		}
	}
}

func TestSecretSources(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse("s.yaml", []byte("outbound:\n  password: file:"+pw+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Outbound.Password.Value(); v != "from-file" {
		t.Fatalf("file secret = %q", v)
	}
	t.Setenv("DM_TEST_SECRET", "from-env")
	c, err = Parse("s.yaml", []byte("threading:\n  secret: env:DM_TEST_SECRET\n"))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Threading.Secret.Value(); v != "from-env" {
		t.Fatalf("env secret = %q", v)
	}
	_, err = Parse("s.yaml", []byte("threading:\n  secret: env:DM_TEST_UNSET_VAR\n"))
	if err == nil || !strings.Contains(err.Error(), "s.yaml:2:") || !strings.Contains(err.Error(), "DM_TEST_UNSET_VAR is not set") {
		t.Fatalf("unset env secret: %v", err)
	}
}

func TestCustomFieldProblems(t *testing.T) {
	_, err := Parse("f.yaml", []byte(`custom_fields:
  - {name: Order-ID}
  - {name: status}
  - {name: plan, type: choice}
  - {name: size, type: huge}
`))
	got := err.Error()
	for _, want := range []string{
		`f.yaml:2: custom_fields[0].name: custom field name "Order-ID" must be lower-case`,
		`f.yaml:3: custom_fields[1].name: custom field name "status" is a built-in command`,
		`f.yaml:4: custom_fields[2].choices: custom field "plan" of type choice needs choices`,
		`f.yaml:5: custom_fields[3].type: "huge" must be text, number or choice`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
}

// A channel language needs templates: built in, or a folder of
// outbound.templates_dir.
func TestChannelLanguageNeedsTemplates(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "it"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "it", "confirmation.txt.tmpl"), []byte("Grazie"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := "outbound:\n  templates_dir: " + dir + "\nchannels:\n  - name: a\n    addresses: [a@acme.test]\n    language: "
	for lang, ok := range map[string]bool{"de": true, "es": true, "it": true, "pt": false, "../it": false} {
		_, err := Parse("c.yaml", []byte(base+lang+"\n"))
		if (err == nil) != ok {
			t.Errorf("language %q: err %v, want ok %v", lang, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "channels[0].language") {
			t.Errorf("language %q: %v", lang, err)
		}
	}
}
