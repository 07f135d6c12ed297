package reply

import "testing"

func TestTrimTextFromSender(t *testing.T) {
	gina := Sender{Name: "Gina Smith", Address: "gina@example.com"}
	john := Sender{Address: "john.doe@example.com"}
	tests := []struct {
		name string
		from Sender
		in   string
		want string
	}{
		{"name alone after blank", gina, "It works now.\n\nGina", "It works now."},
		{"valediction goes with the name", gina, "It works now.\nThank you,\nGina", "It works now."},
		{"name block with contact lines", gina, "It works now.\n\nGina Smith\ngina@example.com\n(555) 346-9947\nwww.example.com", "It works now."},
		{"rule above the name block", gina, "It works now.\n\n----------------\n\nLOGO\n\nMs Gina Smith\n\nt. 555-931-0702", "It works now."},
		{"name from the local part", john, "It works now.\n\nJohn E. Doe, Ph.D.\nPresident", "It works now."},
		{"name in a sentence stays", gina, "It works now.\n\nGina will call you tomorrow.", "It works now.\n\nGina will call you tomorrow."},
		{"address asked for stays", gina, "Please ship it to:\n\nGina Smith\n12 Main Street\nSpringfield", "Please ship it to:\n\nGina Smith\n12 Main Street\nSpringfield"},
		{"name without a break stays", gina, "It works now.\nGina Smith", "It works now.\nGina Smith"},
		{"only the name stays", gina, "Gina", "Gina"},
		{"another name stays", gina, "It works now.\n\nBob", "It works now.\n\nBob"},
		{"role name marks nothing", Sender{Name: "Support Team", Address: "support@acme.example"}, "It works now.\n\nSupport Team", "It works now.\n\nSupport Team"},
		{"too long a tail stays", gina, "It works now.\n\nGina\na\nb\nc\nd\ne\nf\ng\nh\ni", "It works now.\n\nGina\na\nb\nc\nd\ne\nf\ng\nh\ni"},
		{"no sender", Sender{}, "It works now.\n\nGina", "It works now.\n\nGina"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := TrimTextFrom(tc.in, tc.from); got != tc.want {
				t.Errorf("TrimTextFrom(%q, %+v) = %q, want %q", tc.in, tc.from, got, tc.want)
			}
		})
	}
}
