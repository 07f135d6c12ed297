package ingest

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jhillyerd/enmime/v2/mediatype"
)

// TestMayMatchPrefilters checks that each mayMatch function is true
// whenever its regexp matches: on the subjects and senders of the
// fixtures, on their variants, and on random strings built from the
// regexps' own words, case changes, spaces and the letters that case
// folding reaches outside ASCII (U+017F, U+212A).
func TestMayMatchPrefilters(t *testing.T) {
	checks := []struct {
		name     string
		may      func(string) bool
		matches  func(string) bool
		alphabet []string
	}{
		{"strongOOF", mayMatchStrongOOF, strongOOF.MatchString, []string{"auto", "matic", "reply", "réponse", "Réponse", "RÉPONSE", "reponse", " automatique", "out of ", "office", "the ", "respuesta", "risposta", "resposta", "fuera de", "fuori sede", "frånvaro", "i am ", "on vacation", "vacation reply", "urlaubsabwesenheit", "abwesenheitsnotiz", "absence du bureau", "Re: ", "RE:", "re", "ſ", "K", "\t", " ", "\f", ":", "x"}},
		{"weakOOF", mayMatchWeakOOF, weakOOF.MatchString, []string{"absence", "absent", "abwesend", "ausente", "vacation", "vacances", "congés", "CONGÉS", "urlaub", "ſ", "K", " ", "\t", ":", "Re", "x"}},
		{"bounceSender", mayMatchBounceSender, bounceSender.MatchString, []string{"mailer", "-", "_", "daemon", "post", "master", "mail", "mdaemon", ".delivery", "bounce", "s", "double-bounce", "nobody", "@", "example.com", "ſ", "K", " ", "MAILER"}},
		{"bounceName", mayMatchBounceName, bounceName.MatchString, []string{"mail delivery ", "system", "subsystem", "service", "mailer", " ", "-", "_", "daemon", "postmaster", "systemadministrator", "mail administrator", "MA", "Ma", "mA", "ſ", "K", "x"}},
	}
	// The common case the filters are for: no regexp compiled.
	for _, subj := range []string{"Re: facture 2024-118", "RE: [#12] problème de connexion", "Problème de connexion", "Bonjour", "Commande 4411"} {
		if mayMatchStrongOOF(subj) || mayMatchWeakOOF(subj) {
			t.Errorf("subject %q would compile the out-of-office regexps", subj)
		}
	}
	if mayMatchBounceSender("claire.dupont@client.test") || mayMatchBounceName("Claire Dupont") {
		t.Error("a customer's From would compile the bounce regexps")
	}
	var samples []string
	files, _ := filepath.Glob(filepath.Join("..", "fixtures", "*", "*.eml"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Parse(data, ParseOptions{})
		if err != nil {
			continue
		}
		samples = append(samples, m.Subject)
		if m.From != nil {
			samples = append(samples, m.From.Address, m.From.Name)
		}
	}
	for _, c := range checks {
		rnd := rand.New(rand.NewPCG(7, 9))
		in := append([]string(nil), samples...)
		for _, s := range samples {
			in = append(in, strings.ToUpper(s), strings.ToLower(s), " "+s)
		}
		for range 20000 {
			var b strings.Builder
			for n := rnd.IntN(6); n >= 0; n-- {
				b.WriteString(c.alphabet[rnd.IntN(len(c.alphabet))])
			}
			in = append(in, b.String())
		}
		matched := 0
		for _, s := range in {
			if c.matches(s) {
				matched++
				if !c.may(s) {
					t.Errorf("%s matches %q but mayMatch says no", c.name, s)
				}
			}
		}
		if matched < 100 {
			t.Errorf("%s: only %d of %d inputs match: the test does not exercise the filter", c.name, matched, len(in))
		}
	}
}

// TestMayBeReport checks that mayBeReport is true whenever
// mediatype.Parse reads a value as multipart/report, on random values
// built from the pieces of one, encodings, quotes and line breaks.
func TestMayBeReport(t *testing.T) {
	pieces := []string{"multipart/", "Multipart/", "MULTIPART/", "report", "REPORT", "Rep", "ort", "rep\rort", "\r", "\n", ";", " ", "\"", "=", "report-type=delivery-status", "=?utf-8?q?report?=", "=?utf-8?b?cmVwb3J0?=", "mixed", "<b>", "ſ", "K", "/", "x"}
	rnd := rand.New(rand.NewPCG(21, 22))
	reports := 0
	for range 50000 {
		var b strings.Builder
		for k := 1 + rnd.IntN(6); k > 0; k-- {
			b.WriteString(pieces[rnd.IntN(len(pieces))])
		}
		ct := b.String()
		mt, _, _, err := mediatype.Parse(ct)
		if err != nil || !strings.EqualFold(mt, "multipart/report") {
			continue
		}
		reports++
		if !mayBeReport(ct) {
			t.Fatalf("mayBeReport(%q) is false, mediatype.Parse reads %q", ct, mt)
		}
	}
	if reports < 100 {
		t.Fatalf("only %d random values read as multipart/report", reports)
	}
	if mayBeReport("multipart/alternative; boundary=\"b1\"") || mayBeReport("text/plain; charset=utf-8") {
		t.Error("usual mail would parse its root Content-Type twice")
	}
}
