package ingest

import "testing"

func TestContentLanguage(t *testing.T) {
	for in, want := range map[string]string{
		"de-DE": "de-de", " es ": "es", "fr, en": "fr", "EN-us": "en-us", "pt-BR,pt": "pt-br",
		"": "", "x": "", "../../etc": "", "de_DE": "", "1de": "", "-de": "", "zh-Hant-TW": "zh-hant-tw",
	} {
		if got := contentLanguage(in); got != want {
			t.Errorf("contentLanguage(%q) = %q, want %q", in, got, want)
		}
	}
}
