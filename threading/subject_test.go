package threading

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func TestSubjectTokenFind(t *testing.T) {
	tok, err := NewSubjectToken("[#{id}]")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		subject string
		id      int64
		ok      bool
	}{
		{"Invoice charged twice [#12]", 12, true},
		{"RE: Invoice [#12]", 12, true},
		{"RE : TR : Réf : Invoice [#12]", 12, true},
		{"AW: WG: AW: Rechnung [# 12]", 12, true},
		{"Fwd: [#3] old thread [#45]", 45, true}, // the newest token wins
		{"Re: [#0] zero", 0, false},
		{"Re: issue #12 again", 0, false},
		{"Re: order 12", 0, false},
		{"", 0, false},
	}
	for _, c := range cases {
		id, ok := tok.Find(c.subject)
		if id != c.id || ok != c.ok {
			t.Errorf("Find(%q) = %d, %v; want %d, %v", c.subject, id, ok, c.id, c.ok)
		}
	}
	if got := tok.Tag("Re: Invoice [#12]", 12); got != "Re: Invoice [#12]" {
		t.Errorf("Tag kept an existing token: %q", got)
	}
	if got := tok.Tag("Invoice [#9]", 12); got != "Invoice [#12]" {
		t.Errorf("Tag replaced another ticket's token: %q", got)
	}
	if got := tok.Strip("Re: [#12] Invoice"); got != "Re: Invoice" {
		t.Errorf("Strip = %q", got)
	}

	custom, err := NewSubjectToken("[ACME-{id}]")
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := custom.Find("Re: printer [acme-77]"); !ok || id != 77 {
		t.Errorf("custom token: %d, %v", id, ok)
	}
	if _, ok := custom.Find("Re: printer [#77]"); ok {
		t.Errorf("custom token matched the default format")
	}
	for _, bad := range []string{"#", "{id}", "  {id} "} {
		if _, err := NewSubjectToken(bad); err == nil {
			t.Errorf("NewSubjectToken(%q) accepted", bad)
		}
	}
}

func TestBaseSubject(t *testing.T) {
	cases := map[string]string{
		"Re: Invoice":                       "Invoice",
		"RE: RE: Invoice":                   "Invoice",
		"Re[2]: Invoice":                    "Invoice",
		"RE : TR : Réf : Facture de mars":   "Facture de mars",
		"TR: Facture":                       "Facture",
		"AW: WG: Rechnung fehlt":            "Rechnung fehlt",
		"SV: VS: Faktura":                   "Faktura",
		"RV: RE: Factura":                   "Factura", // Spanish Outlook forward
		"Fwd: Lieferung beschädigt":         "Lieferung beschädigt",
		"Antw: Doorst: Bestelling":          "Bestelling",
		"R: I: Fattura":                     "Fattura",
		"[External] Re: Quote":              "Quote",
		"Réponse : Devis":                   "Devis",
		"Meeting re: budget":                "Meeting re: budget",
		"  Re:   spaced    out   ":          "spaced out",
		"Question about Re: prefixes (fwd)": "Question about Re: prefixes",
		"回复: 发票":                            "发票",
	}
	for in, want := range cases {
		if got := BaseSubject(in); got != want {
			t.Errorf("BaseSubject(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsForward(t *testing.T) {
	for s, want := range map[string]bool{
		"Fwd: order":       true,
		"FW: order":        true,
		"TR: commande":     true,
		"TR : commande":    true,
		"WG: Bestellung":   true,
		"Re: Fwd: order":   true,
		"Re: order":        false,
		"Forward planning": false,
		"AW: Bestellung":   false,
		"Trip to Lyon":     false,
	} {
		if got := IsForward(s); got != want {
			t.Errorf("IsForward(%q) = %v, want %v", s, got, want)
		}
	}
}

// TestBaseSubjectPrefilter checks BaseSubject's shortcut: the reply
// prefix regexps never match a subject without a colon (or full-width
// colon) or, for the bracketed tags, without a bracket.
func TestBaseSubjectPrefilter(t *testing.T) {
	words := []string{"Re", "RE", "re", "AW", "Fwd", "TR", "Réf", "回复", ":", "：", " ", "[", "]", "ext", "EXTERNAL", "spam", "x", "^2", "[3]", "(4)", "ſ", "K"}
	rnd := rand.New(rand.NewPCG(5, 6))
	matched := 0
	for range 20000 {
		var b strings.Builder
		for n := rnd.IntN(7); n >= 0; n-- {
			b.WriteString(words[rnd.IntN(len(words))])
		}
		s := b.String()
		if replyPrefix.MatchString(s) {
			matched++
			if !strings.ContainsAny(s, ":：") {
				t.Errorf("replyPrefix matches %q without a colon", s)
			}
		}
		if replyPrefixBracketed.MatchString(strings.ToLower(s)) && !strings.Contains(s, "[") {
			t.Errorf("replyPrefixBracketed matches %q without a bracket", s)
		}
	}
	if matched < 100 {
		t.Errorf("only %d inputs match replyPrefix", matched)
	}
}
