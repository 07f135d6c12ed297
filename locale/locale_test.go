package locale

import (
	"testing"
	"time"
)

func TestEveryLanguageIsComplete(t *testing.T) {
	for _, lang := range Builtin {
		w, ok := table[lang]
		if !ok {
			t.Fatalf("%s: no words", lang)
		}
		for _, c := range []string{Open, Pending, Resolved, Closed} {
			if w.status[c] == "" {
				t.Errorf("%s: no name for %s", lang, c)
			}
		}
		if len(w.priority) != 5 || len(w.months) != 12 || w.noSubject == "" || w.date == "" {
			t.Errorf("%s: incomplete entry", lang)
		}
	}
}

func TestWords(t *testing.T) {
	at := time.Date(2026, 3, 2, 9, 5, 0, 0, time.UTC)
	for lang, want := range map[string]string{"en": "2 March 2026 at 09:05 UTC", "fr": "2 mars 2026 à 09:05 UTC", "de": "2. März 2026 um 09:05 UTC", "es": "2 de marzo de 2026 a las 09:05 UTC", "it": "2 March 2026 at 09:05 UTC"} {
		if got := Date(lang, at); got != want {
			t.Errorf("Date(%s) = %q, want %q", lang, got, want)
		}
	}
	if PriorityName("de", 4) != "Dringend" || PriorityName("es", 9) != "9" || StatusName("es", Pending) != "Pendiente" {
		t.Error("names")
	}
	sw := StatusWords()
	for word, cat := range map[string]string{"offen": Open, "gelöst": Resolved, "cerrado": Closed, "en attente": Pending, "on hold": Pending, "pendiente": Pending, "wartend": Pending, "clos": Closed} {
		if sw[word] != cat {
			t.Errorf("status word %q = %q, want %q", word, sw[word], cat)
		}
	}
	pw := PriorityWords()
	for word, p := range map[string]int{"niedrig": 1, "baja": 1, "normal": 2, "media": 2, "élevée": 3, "hoch": 3, "urgente": 4, "dringend": 4} {
		if pw[word] != p {
			t.Errorf("priority word %q = %d, want %d", word, pw[word], p)
		}
	}
}
