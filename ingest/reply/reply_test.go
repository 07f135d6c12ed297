package reply

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestTrimText(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"blank", " \n\t\n", ""},
		{"plain", "Hello there.\n", "Hello there."},
		{"keeps indentation", "Hi\n\n   - one\n   - two\n", "Hi\n\n   - one\n   - two"},
		{"gmail", "Yes.\n\nOn Mon, Jan 8, 2024 at 10:00 AM Bob <bob@example.com> wrote:\n> Ready?\n", "Yes."},
		{"no blank line before header", "Yes.\nOn Mon, Jan 8, 2024 at 10:00 AM Bob <bob@example.com> wrote:\n> Ready?", "Yes."},
		{"header without quote prefix", "Yes.\n\nOn 8 Jan 2024, at 10:00, Bob wrote:\n\nReady?\n", "Yes."},
		{"wrapped header", "Yes.\n\nOn Mon, Jan 8, 2024 at 10:00 AM Bob <\nbob@example.com> wrote:\n\n> Ready?", "Yes."},
		{"wrapped address close", "Ok.\n\ntir. 9. jan. 2024 kl. 10:00 skrev Bob <bob@example.com\n>:\n\n> Klar?", "Ok."},
		{"outlook", "Done.\n\nFrom: Bob <bob@example.com>\nSent: Monday\nTo: me\nSubject: x\n\nold", "Done."},
		{"outlook markdown", "Done.\n\n*From:* Bob\n*Sent:* Monday\n*To:* me\n\nold", "Done."},
		{"single from line is text", "From: my phone I cannot log in.\nHelp!", "From: my phone I cannot log in.\nHelp!"},
		{"original message", "See below.\n\n-----Original Message-----\nFrom: a\nSent: b\n\nold", "See below."},
		{"original message no header", "Foo\n\n-------- Original Message --------\n\nTHE END.", "Foo"},
		{"discussed separator", "Outlook adds this line:\n\n-----Original Message-----\n\nWhy?", "Outlook adds this line:\n\n-----Original Message-----\n\nWhy?"},
		{"separator inside sentence", "The line -----Original Message----- breaks it.", "The line -----Original Message----- breaks it."},
		{"forward with note", "FYI\n\n---------- Forwarded message ---------\nFrom: a <a@x>\nDate: now\nSubject: s\nTo: b\n\nbody", "FYI"},
		{"forward without note", "---------- Forwarded message ---------\nFrom: a <a@x>\nDate: now\nSubject: s\nTo: b\n\nbody text", "body text"},
		{"quote only", "> a\n> b\n", "> a\n> b"},
		{"all history returns original", "On Mon, Jan 8, 2024 at 10:00 AM Bob <bob@example.com> wrote:\n> Ready?", "On Mon, Jan 8, 2024 at 10:00 AM Bob <bob@example.com> wrote:\n> Ready?"},
		{"bottom post", "On Mon, Jan 8, 2024 at 10:00 AM Bob <bob@example.com> wrote:\n> Ready?\n\nYes, ready.", "Yes, ready."},
		{"bare leading quote kept", "> Ready?\n\nYes, ready.", "> Ready?\n\nYes, ready."},
		{"interleaved", "Hi,\n> q1\nA1\n> q2\nA2\n> bye", "Hi,\n> q1\nA1\n> q2\nA2"},
		{"supercite", "Yes.\n\nOn 8 Jan 2024, Bob wrote:\nBob> Ready?", "Yes."},
		{"signature", "Thanks\n-- \nBob\nACME", "Thanks"},
		{"loose signature", "Thanks\n--\nBob\nACME", "Thanks"},
		{"underscore signature", "Thanks\n__\nlist footer", "Thanks"},
		{"signature first line is text", "-- \nBob", "-- \nBob"},
		{"long tail under loose delimiter", "Intro\n--\n" + strings.Repeat("text line\n", 20), "Intro\n--\n" + strings.TrimSuffix(strings.Repeat("text line\n", 20), "\n")},
		{"markdown rule kept", "Intro\n---\nMore", "Intro\n---\nMore"},
		{"iphone", "Ok\n\nSent from my iPhone", "Ok"},
		{"iphone fr", "Ok\n\nEnvoyé de mon iPhone", "Ok"},
		{"iphone de", "Ok\n\nVon meinem iPhone gesendet", "Ok"},
		{"iphone es", "Ok\n\nEnviado desde mi iPhone", "Ok"},
		{"outlook ios", "Ok\n\nGet Outlook for iOS<https://aka.ms/o0ukef>", "Ok"},
		{"outlook android", "Ok\n\nGet Outlook for Android", "Ok"},
		{"sent from sentence", "Ok\n\nSent from my desk, which is easier than my mobile phone.", "Ok\n\nSent from my desk, which is easier than my mobile phone."},
		{"only a trailer", "Sent from my iPhone", "Sent from my iPhone"},
		{"on monday", "On Monday we shipped it.\nThanks", "On Monday we shipped it.\nThanks"},
		{"wrote without date", "Here is what Bob wrote:\nit is fine.\n\nIs it?", "Here is what Bob wrote:\nit is fine.\n\nIs it?"},
		{"french", "Merci.\n\nLe 8 janv. 2024 à 10:00, Bob <bob@example.com> a écrit :\n> Prêt ?", "Merci."},
		{"german", "Danke.\n\nAm 08.01.2024 um 10:00 schrieb Bob <bob@example.com>:\n> Fertig?", "Danke."},
		{"spanish", "Gracias.\n\nEl 8 ene 2024, a las 10:00, Bob <bob@example.com> escribió:\n> ¿Listo?", "Gracias."},
		{"italian", "Grazie.\n\nIl giorno lun 8 gen 2024 alle ore 10:00 Bob <bob@example.com> ha scritto:\n> Pronto?", "Grazie."},
		{"gmail iso", "Before\n\n2016-03-03 17:21 GMT+01:00 Some One <a@b.c>:\n\nAfter", "Before"},
		{"crlf", "Yes.\r\n\r\nOn Mon, Jan 8, 2024 at 10:00 AM Bob <bob@example.com> wrote:\r\n> Ready?\r\n", "Yes."},
		{"invalid utf8", "caf\xe9 ok", "caf\uFFFD ok"},
		{"pipe table kept", "| a | b |\n| 1 | 2 |", "| a | b |\n| 1 | 2 |"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := TrimText(tt.in); got != tt.want {
				t.Errorf("TrimText(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestTrimHTML(t *testing.T) {
	tests := []struct {
		name, in  string
		removed   bool
		keeps     []string
		drops     []string
		unchanged bool
	}{
		{name: "empty", in: "", unchanged: true},
		{name: "no quote", in: "<p>Hello</p>", unchanged: true},
		{name: "gmail", in: `<div>Yes</div><div class="gmail_quote"><div class="gmail_attr">On Mon, Bob wrote:</div><blockquote class="gmail_quote">Ready?</blockquote></div>`,
			removed: true, keeps: []string{"Yes"}, drops: []string{"Ready?", "wrote"}},
		{name: "apple", in: `<div>Yes</div><blockquote type="cite"><div>On Jan 8, 2024, at 10:00, Bob wrote:</div>Ready?</blockquote>`,
			removed: true, keeps: []string{"Yes"}, drops: []string{"Ready?"}},
		{name: "apple bottom post", in: `<blockquote type="cite">Ready?</blockquote><div>Yes</div>`, unchanged: true},
		{name: "outlook web", in: `<div>Yes</div><div id="appendonsend"></div><hr><div id="divRplyFwdMsg"><b>From:</b> Bob</div><div>Ready?</div>`,
			removed: true, keeps: []string{"Yes"}, drops: []string{"Ready?", "From:"}},
		{name: "outlook desktop", in: `<p>Yes</p><div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm"><p><b>From:</b> Bob<br><b>Sent:</b> Monday</p></div><p>Ready?</p>`,
			removed: true, keeps: []string{"Yes"}, drops: []string{"Ready?", "Sent:"}},
		{name: "bordered div without header", in: `<p>Yes</p><div style="border-top:solid #E1E1E1 1.0pt">A boxed note</div>`, unchanged: true},
		{name: "thunderbird", in: `<p>Yes</p><div class="moz-cite-prefix">On 08/01/2024 10:00, Bob wrote:<br></div><blockquote type="cite">Ready?</blockquote>`,
			removed: true, keeps: []string{"Yes"}, drops: []string{"Ready?", "Bob wrote"}},
		{name: "yahoo", in: `<div>Yes</div><div class="yahoo_quoted">Ready?</div>`, removed: true, keeps: []string{"Yes"}, drops: []string{"Ready?"}},
		{name: "only quote", in: `<blockquote type="cite">Ready?</blockquote>`, unchanged: true},
		{name: "plain blockquote", in: `<p>The manual:</p><blockquote>Restart.</blockquote>`, unchanged: true},
		{name: "broken markup", in: `<div>Yes<blockquote type=cite>Ready?`, removed: true, keeps: []string{"Yes"}, drops: []string{"Ready?"}},
		{name: "outlook history inside inline gmail quote", in: `<div>Hi</div><div class="gmail_quote"><blockquote class="gmail_quote">Q?<div id="divRplyFwdMsg"><b>From:</b> X<br><b>Sent:</b> Y</div>old</blockquote><div>My answer.</div><blockquote class="gmail_quote">bye</blockquote></div>`,
			removed: true, keeps: []string{"My answer.", "Q?"}, drops: []string{"bye"}},
		{name: "image reply kept", in: `<img src="cid:x"><blockquote type="cite">Ready?</blockquote>`, removed: true, keeps: []string{"<img"}, drops: []string{"Ready?"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, removed := TrimHTML(tt.in)
			if tt.unchanged {
				if removed || got != tt.in {
					t.Fatalf("TrimHTML(%q) = %q, %v; want input unchanged", tt.in, got, removed)
				}
				return
			}
			if removed != tt.removed {
				t.Errorf("removed = %v, want %v (%q)", removed, tt.removed, got)
			}
			for _, k := range tt.keeps {
				if !strings.Contains(got, k) {
					t.Errorf("result lacks %q: %q", k, got)
				}
			}
			for _, d := range tt.drops {
				if strings.Contains(got, d) {
					t.Errorf("result still has %q: %q", d, got)
				}
			}
		})
	}
}

func TestDetectors(t *testing.T) {
	attr := []struct {
		s    string
		want bool
	}{
		{"on mon, jan 8, 2024 at 10:00 am bob <bob@example.com> wrote:", true},
		{"le 8 janv. 2024 à 10:00, bob a écrit :", true},
		{"am 08.01.2024 um 10:00 schrieb bob:", true},
		{"el 8 ene 2024, a las 10:00, bob escribió:", true},
		{"op 8 jan. 2024 om 10:00 schreef bob <b@x.nl>:", true},
		{"w dniu 08.01.2024 o 10:00, bob pisze:", true},
		{"ср, 30 апр. 2025 г. в 15:19, john doe <doe@example.com>:", true},
		{"on monday we shipped it.", false},
		{"he rewrote 3 pages:", false},
		{"the note bob wrote:", false},
		{"see https://x.example/who-wrote-2024", false},
	}
	for _, tt := range attr {
		if got := attributionEnd(tt.s, false); got != tt.want {
			t.Errorf("attributionEnd(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
	trailers := []struct {
		s    string
		want bool
	}{
		{"Sent from my iPhone", true},
		{"Sent from my Wiko Ridge 4G", true},
		{"Sent from my HTC phone. Please excuse typos", true},
		{"Envoyé de mon iPad", true},
		{"Von meinem Samsung Galaxy Smartphone gesendet.", true},
		{"Enviado desde mi iPhone", true},
		{"Get Outlook for Android<https://aka.ms/ghei36>", true},
		{"Verzonden met BlackBerry Work", true},
		{"Sent from my desk, which is easier than my phone.", false},
		{"Von meinem Konto wurde abgebucht.", false},
		{"Sent the form yesterday", false},
	}
	for _, tt := range trailers {
		if got := isTrailer(tt.s); got != tt.want {
			t.Errorf("isTrailer(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
	seps := []struct {
		s    string
		want bool
	}{
		{"-----Original Message-----", true},
		{"-----Message d'origine-----", true},
		{"-----Ursprüngliche Nachricht-----", true},
		{"---------- Forwarded message ---------", true},
		{"Begin forwarded message:", true},
		{"Début du message réexpédié :", true},
		{"Original message", false},
		{"----- Hello -----", false},
	}
	for _, tt := range seps {
		if got, _ := separatorPhrase(tt.s); got != tt.want {
			t.Errorf("separatorPhrase(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}

// bigBody builds a body of about size bytes: a short reply, then
// quoted lines.
func bigBody(quoted int) string {
	var b strings.Builder
	b.WriteString("Thanks, that works.\n\nOn Mon, Jan 8, 2024 at 10:00 AM Bob <bob@example.com> wrote:\n")
	line := "> " + strings.Repeat("lorem ipsum dolor sit amet ", 1) + strings.Repeat("x", 20) + "\n"
	for i := 0; i < quoted; i++ {
		b.WriteString(line)
	}
	for b.Len() < 1<<20 {
		b.WriteString("> " + strings.Repeat("y", 1000) + "\n")
	}
	return b.String()
}

// minDuration returns the least CPU time of seven runs of f.
func minDuration(f func()) time.Duration {
	best := time.Duration(1<<63 - 1)
	for range 7 {
		runtime.GC() // garbage of the previous run is not this one's
		best = min(best, threadCPU(f))
	}
	return best
}

// TestLinearTime checks that TrimText scales linearly: four times the
// input may cost about four times as much, never sixteen. A ratio is
// robust to slow machines and the race detector, where an absolute
// budget is not, and it compares the CPU time of the measuring thread
// (threadCPU), which time spent waiting for a core on a loaded
// machine does not inflate; BenchmarkTrimText1MB measures the 100 ms
// budget.
func TestLinearTime(t *testing.T) {
	if got := TrimText(bigBody(20000)); got != "Thanks, that works." {
		t.Errorf("got %q", got)
	}
	inputs := map[string]func(size int) string{
		"quoted": func(size int) string {
			var b strings.Builder
			b.WriteString("Thanks.\n\nOn Mon, Jan 8, 2024 at 10:00 AM Bob <bob@example.com> wrote:\n")
			for b.Len() < size {
				b.WriteString("> lorem ipsum dolor sit amet xxxxxxxxxxxxxxxxxxxxx\n")
			}
			return b.String()
		},
		"candidates": func(size int) string {
			var b strings.Builder
			for b.Len() < size {
				b.WriteString("To: x\n--\nOn 1 2 3 <\n> :\n\n\n")
			}
			return b.String()
		},
		"blank runs": func(size int) string {
			var b strings.Builder
			for b.Len() < size {
				b.WriteString("From: a\n" + strings.Repeat("\n", 500))
			}
			return b.String()
		},
	}
	for name, gen := range inputs {
		// From 128 KiB up: a smaller input fits in the CPU cache, and
		// the ratio then measures the cache (13x from 64 to 256 KiB on
		// a loaded 2-core VM, for main and for linear code alike).
		small, large := gen(1<<17), gen(1<<19)
		ts := minDuration(func() { TrimText(small) })
		tl := minDuration(func() { TrimText(large) })
		// Quadratic work would take 16 times as long; allow 12 plus
		// slack for a busy machine.
		if tl > 12*ts+5*time.Millisecond {
			t.Errorf("%s: 128 KiB took %v, 512 KiB took %v: not linear", name, ts, tl)
		}
	}
}

func BenchmarkTrimText1MB(b *testing.B) {
	in := bigBody(20000)
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		TrimText(in)
	}
}

// BenchmarkTrimTextPlain1MB is the costly case: every line is reply
// text, so every detector runs on every line.
func BenchmarkTrimTextPlain1MB(b *testing.B) {
	var sb strings.Builder
	for sb.Len() < 1<<20 {
		sb.WriteString("On Monday the 12th we sent you 3 parcels from our warehouse in Lyon, wrote Bob\n")
		sb.WriteString("Sent from the office, but nobody answered the phone at all that week.\n")
		sb.WriteString("From: the dashboard I cannot export anything since the last update.\n\n")
	}
	in := sb.String()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		TrimText(in)
	}
}

func BenchmarkTrimHTML(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`<div>Thanks</div><div class="gmail_quote"><div class="gmail_attr">On Mon, Bob wrote:</div><blockquote class="gmail_quote">`)
	for sb.Len() < 1<<20 {
		sb.WriteString("<div>quoted line with some text in it</div>\n")
	}
	sb.WriteString("</blockquote></div>")
	in := sb.String()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		TrimHTML(in)
	}
}
