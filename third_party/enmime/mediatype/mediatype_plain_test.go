package mediatype

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestPlainMediaTypeNeedsNoRepair checks the claim of isPlainMediaType:
// every value it accepts comes out of fixMediaType unchanged, with
// either option, so that ParseWithOptions gives the same result for it
// with or without the repairs. The values are real-mail forms and
// random strings built from their pieces, including the characters and
// forms that the repairs act on.
func TestPlainMediaTypeNeedsNoRepair(t *testing.T) {
	values := []string{
		"", "text/plain", "text/plain; charset=utf-8", `text/plain; charset="utf-8"; format=flowed`,
		`multipart/alternative; boundary="----=_Part_123_456.789"`, `application/pdf; name="invoice 2024.pdf"`,
		`attachment; filename="invoice.pdf"`, "inline", `multipart/mixed;boundary="b1"`,
		"text/plain; charset=utf-8; set=x", `text/html; charset="utf-8"; charset=latin1`,
	}
	pieces := []string{
		"text", "/", "plain", "html", "multipart", "mixed", "attachment", "inline", ";", "; ", ";  ", " ",
		"charset", "name", "filename", "boundary", "format", "set", "=", "utf-8", "flowed", `"`, `""`,
		`"a b"`, `"x=y"`, `"a;b"`, `"(c)"`, "\\", "?", "=?utf-8?q?x?=", "<", ">", "<b>", "\t", "\r", "\n",
		"é", ",", "@", "[", "]", ":", "(", ")", "*", "'", "name*=utf-8''caf%C3%A9", "not-a-param-value",
	}
	rnd := rand.New(rand.NewPCG(31, 32))
	for range 200000 {
		var b strings.Builder
		for k := 1 + rnd.IntN(10); k > 0; k-- {
			b.WriteString(pieces[rnd.IntN(len(pieces))])
		}
		values = append(values, b.String())
	}
	// Near-plain values: the plain structure with mutations in places.
	types := []string{"text/plain", "attachment", "Text/HTML", "x", "a/b/c", "text/", "/x", " text/plain", "text/plain "}
	seps := []string{";", "; ", ";  ", " ;", ";\t", ";;", ""}
	names := []string{"charset", "name", "set", "boundary", "Charset", "", "a b", "x*", "name*0"}
	eqs := []string{"=", "= ", " =", ""}
	vals := []string{"utf-8", `"a b"`, `""`, `"x=y"`, "a/b", "", `"a;b"`, `"open`, "é", `x"y`, `"a"b`, "us-ascii", `"----=_P.1"`}
	for range 100000 {
		v := types[rnd.IntN(len(types))]
		for k := rnd.IntN(4); k > 0; k-- {
			v += seps[rnd.IntN(len(seps))] + names[rnd.IntN(len(names))] + eqs[rnd.IntN(len(eqs))] + vals[rnd.IntN(len(vals))]
		}
		if rnd.IntN(8) == 0 {
			v += seps[rnd.IntN(len(seps))]
		}
		values = append(values, v)
	}
	plain := 0
	for _, v := range values {
		if !isPlainMediaType(v) {
			continue
		}
		plain++
		for _, strip := range []bool{false, true} {
			opts := ParseOptions{StripMediaTypeInvalidCharacters: strip}
			if got := fixMediaType(v, opts); got != v {
				t.Fatalf("isPlainMediaType(%q) but fixMediaType (strip %v) gives %q", v, strip, got)
			}
		}
	}
	if plain < 5000 {
		t.Fatalf("only %d of %d values are plain", plain, len(values))
	}
	t.Logf("%d of %d values are plain", plain, len(values))
	for _, v := range values[:11] {
		if !isPlainMediaType(v) && !strings.Contains(v, "set=") {
			t.Errorf("real-mail value %q is not taken as plain", v)
		}
	}
}

// TestParseWithOptionsPlainSameResult compares ParseWithOptions with
// the result of parsing the repaired value, on plain values.
func TestParseWithOptionsPlainSameResult(t *testing.T) {
	for _, v := range []string{"text/plain; charset=utf-8", `attachment; filename="a b.pdf"`, "", "inline", `text/x; a="not-a-param-value"; b=not-a-param-value`} {
		if !isPlainMediaType(v) {
			t.Fatalf("%q is not plain", v)
		}
		mt, params, invalid, err := ParseWithOptions(v, ParseOptions{})
		wmt, wparams, winvalid, werr := parseRepaired(v)
		// The invalid parameters come from a map, in no set order.
		slices.Sort(invalid)
		slices.Sort(winvalid)
		if mt != wmt || !reflect.DeepEqual(params, wparams) || !reflect.DeepEqual(invalid, winvalid) || (err == nil) != (werr == nil) {
			t.Errorf("%q: got %q %v %v %v, want %q %v %v %v", v, mt, params, invalid, err, wmt, wparams, winvalid, werr)
		}
	}
}

// parseRepaired is ParseWithOptions as upstream has it: always through
// fixMediaType.
func parseRepaired(ctype string) (string, map[string]string, []string, error) {
	return parseFixed(fixMediaType(ctype, ParseOptions{}))
}
