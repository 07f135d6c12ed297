package ingest

import (
	"math/rand/v2"
	"net/mail"
	"strings"
	"testing"
	"time"
)

// TestParseDateLayoutMatchesNetMail checks parseDate's shortcut: every
// value that time.Parse reads with mailDateLayout is read the same by
// mail.ParseDate (same instant, same zone), on the usual forms and on
// random mutations of them.
func TestParseDateLayoutMatchesNetMail(t *testing.T) {
	var samples []string
	for _, dow := range []string{"Mon, ", "Tue, ", "Sun,", "Fri ,", "mon, ", "Xyz, ", ""} {
		for _, day := range []string{"2", "02", " 2", "31", "32", "0"} {
			for _, mon := range []string{"Mar", "mar", "March", "Feb"} {
				for _, year := range []string{"2026", "26", "1969", "10000"} {
					for _, tm := range []string{"09:14:02", "9:14:02", "09:14", "24:00:00", "09:14:60"} {
						for _, zone := range []string{"+0000", "-0730", "+1400", "-2400", "GMT", "+00:00", "+0000 (UTC)", "+0000 GMT", "-0000"} {
							samples = append(samples, dow+day+" "+mon+" "+year+" "+tm+" "+zone)
						}
					}
				}
			}
		}
	}
	rnd := rand.New(rand.NewPCG(7, 8))
	const alphabet = " \t\r\n,:+-()0123456789MonTueGMTZ"
	base := "Mon, 2 Mar 2026 09:14:02 +0000"
	for range 20000 {
		b := []byte(base)
		for k := 1 + rnd.IntN(3); k > 0; k-- {
			i := rnd.IntN(len(b))
			switch rnd.IntN(3) {
			case 0:
				b[i] = alphabet[rnd.IntN(len(alphabet))]
			case 1:
				b = append(b[:i], b[i+1:]...)
			default:
				b = append(b[:i], append([]byte{alphabet[rnd.IntN(len(alphabet))]}, b[i:]...)...)
			}
		}
		samples = append(samples, string(b))
	}
	matched := 0
	for _, v := range samples {
		v = strings.TrimSpace(v)
		fast, err := time.Parse(mailDateLayout, v)
		if err != nil {
			continue
		}
		matched++
		want, err := mail.ParseDate(v)
		if err != nil {
			t.Fatalf("%q: layout reads %v, mail.ParseDate fails: %v", v, fast, err)
		}
		if !fast.Equal(want) || fast.String() != want.String() {
			t.Fatalf("%q: layout reads %v, mail.ParseDate %v", v, fast, want)
		}
	}
	t.Logf("%d of %d samples take the shortcut", matched, len(samples))
	if matched < 1000 {
		t.Fatalf("only %d of %d samples take the shortcut", matched, len(samples))
	}
}
