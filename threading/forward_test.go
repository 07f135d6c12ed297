package threading

import "testing"

func TestForwardedSender(t *testing.T) {
	cases := []struct {
		name, text string
		want       Person
		ok         bool
	}{
		{"gmail", "See below.\n\n---------- Forwarded message ---------\nFrom: Klaus Müller <Klaus.Mueller@kunde.de>\nDate: Mon, 2 Mar 2026\nSubject: x\n\nbody",
			Person{"Klaus Müller", "klaus.mueller@kunde.de"}, true},
		{"outlook", "FYI\n\n-----Original Message-----\nFrom: Petra Schmidt [mailto:petra@firma.de]\nSent: Monday\n",
			Person{"Petra Schmidt", "petra@firma.de"}, true},
		{"outlook de", "Bitte anlegen\n\n-----Ursprüngliche Nachricht-----\nVon: Petra Schmidt <petra@firma.de>\nGesendet: Montag\n",
			Person{"Petra Schmidt", "petra@firma.de"}, true},
		{"thunderbird fr", "À traiter\n\n-------- Message transféré --------\nSujet : \tContrat\nDe : \tLuc Bernard <luc@societe.fr>\n",
			Person{"Luc Bernard", "luc@societe.fr"}, true},
		{"apple", "Begin forwarded message:\n\nFrom: \"Nora Ito\" <nora@bigcorp.example>\nSubject: seats\n",
			Person{"Nora Ito", "nora@bigcorp.example"}, true},
		{"apple fr", "Début du message réexpédié :\n\nDe: Hélène <helene@exemple.fr>\nObjet: x\n",
			Person{"Hélène", "helene@exemple.fr"}, true},
		{"bare address", "---------- Forwarded message ---------\nFrom: sam@example.org\n", Person{"", "sam@example.org"}, true},
		{"no marker", "From: someone@example.org\nhello", Person{}, false},
		{"marker without sender", "---------- Forwarded message ---------\nSubject: x\n\nno sender here", Person{}, false},
	}
	for _, c := range cases {
		got, ok := ForwardedSender(c.text)
		if ok != c.ok || got != c.want {
			t.Errorf("%s: %+v, %v; want %+v, %v", c.name, got, ok, c.want, c.ok)
		}
	}
}
