package command

import (
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     []Command
		text     string
		problems int
	}{
		{
			name: "freshdesk block",
			in:   "Hi,\n@Simonsays \"status\":\"resolved\", \"priority\":\"high\", \"agent\":\"alice@example.com\" @Simonsays\nDone.\n",
			want: []Command{
				{Key: "status", Value: "resolved", Line: `"status":"resolved"`, Block: true},
				{Key: "priority", Value: "high", Line: `"priority":"high"`, Block: true},
				{Key: "agent", Value: "alice@example.com", Line: `"agent":"alice@example.com"`, Block: true},
			},
			text: "Hi,\n\nDone.\n",
		},
		{
			name: "block wrapped by the client, curly quotes, odd case",
			in:   "@SimonSays “Status” : “En attente”,\n  \"type\":\n\"incident\" @simonsays\nThanks",
			want: []Command{
				{Key: "status", Value: "En attente", Line: `"Status":"En attente"`, Block: true},
				{Key: "type", Value: "incident", Line: `"type":"incident"`, Block: true},
			},
			text: "Thanks\n",
		},
		{
			name: "line commands at the top",
			in:   "#status resolved\n#Priority: URGENT\n  #assign   bob@example.com  \n\nHello Alice, fixed.\n#1 reason: prose\n",
			want: []Command{
				{Key: "status", Value: "resolved", Line: "#status resolved"},
				{Key: "priority", Value: "URGENT", Line: "#Priority: URGENT"},
				{Key: "assign", Value: "bob@example.com", Line: "#assign   bob@example.com"},
			},
			text: "Hello Alice, fixed.\n#1 reason: prose\n",
		},
		{
			name: "hashtags below text are prose",
			in:   "Hello\n#status resolved\n",
			text: "Hello\n#status resolved\n",
		},
		{
			name: "note and tags",
			in:   "#note\n#tags +vip -spam\nInternal: customer is VIP.",
			want: []Command{
				{Key: "note", Value: "", Line: "#note"},
				{Key: "tags", Value: "+vip -spam", Line: "#tags +vip -spam"},
			},
			text: "Internal: customer is VIP.\n",
		},
		{
			name:     "unclosed block",
			in:       "@Simonsays \"status\":\"resolved\"\nbye",
			text:     "",
			problems: 1,
		},
		{
			name:     "bad pair",
			in:       "@Simonsays status=resolved @Simonsays ok",
			text:     "ok\n",
			problems: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Parse(tt.in)
			if !reflect.DeepEqual(p.Commands, tt.want) {
				t.Errorf("commands:\n got %#v\nwant %#v", p.Commands, tt.want)
			}
			if p.Text != tt.text {
				t.Errorf("text = %q, want %q", p.Text, tt.text)
			}
			if len(p.Problems) != tt.problems {
				t.Errorf("problems = %q, want %d", p.Problems, tt.problems)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"#status resolved\nhi", "@Simonsays \"a\":\"b\" @Simonsays", "@simonsays", "#", "# \n#x y\r\n",
		"@Simonsays “status”:“résolu”, \"agent\":\"me\" @Simonsays\n", strings.Repeat("#a b\n", 100),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p := Parse(s)
		if len(p.Text) > len(s)+1 {
			t.Fatalf("text grew: %d > %d", len(p.Text), len(s))
		}
		if utf8.ValidString(s) && !utf8.ValidString(p.Text) {
			t.Fatalf("invalid UTF-8 out of valid input")
		}
		for _, c := range p.Commands {
			if c.Key == "" {
				t.Fatalf("empty key from %q", s)
			}
		}
	})
}
