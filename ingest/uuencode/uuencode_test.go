package uuencode

import (
	"bytes"
	"strings"
	"testing"
)

// encode is a reference encoder for the tests (as uuencode(1) writes).
func encode(name string, data []byte) string {
	var b strings.Builder
	b.WriteString("begin 644 " + name + "\n")
	ch := func(v byte) byte {
		if v == 0 {
			return '`'
		}
		return v + ' '
	}
	for len(data) > 0 {
		n := min(45, len(data))
		line := data[:n]
		data = data[n:]
		b.WriteByte(ch(byte(n)))
		for i := 0; i < n; i += 3 {
			var g [3]byte
			copy(g[:], line[i:min(i+3, n)])
			b.WriteByte(ch(g[0] >> 2))
			b.WriteByte(ch((g[0]<<4 | g[1]>>4) & 0x3f))
			b.WriteByte(ch((g[1]<<2 | g[2]>>6) & 0x3f))
			b.WriteByte(ch(g[2] & 0x3f))
		}
		b.WriteByte('\n')
	}
	b.WriteString("`\nend\n")
	return b.String()
}

func TestFindRoundTrip(t *testing.T) {
	for _, size := range []int{0, 1, 2, 3, 44, 45, 46, 1000} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i*7 + 3)
		}
		text := "Hello,\nthe log is attached.\n\n" + encode("server.log", data) + "\nThanks\n"
		bs := Find(text)
		if len(bs) != 1 {
			t.Fatalf("size %d: %d blocks", size, len(bs))
		}
		b := bs[0]
		if b.Name != "server.log" || b.Mode != "644" || !bytes.Equal(b.Data, data) {
			t.Errorf("size %d: got %q mode %q %d bytes", size, b.Name, b.Mode, len(b.Data))
		}
		if rest := text[:b.Start] + text[b.End:]; rest != "Hello,\nthe log is attached.\n\n\nThanks\n" {
			t.Errorf("size %d: text around the block %q", size, rest)
		}
	}
}

func TestFindLeavesTextAlone(t *testing.T) {
	for _, text := range []string{
		"Please begin 644 more tests.",
		"begin 644 notes.txt\nthis is not uuencoded at all\nend\n",
		"begin 644 cut.bin\nM86)C\n", // no end line
		"begin 9x9 a.bin\n#86)C\n`\nend\n",
		"begin 644 \n#86)C\n`\nend\n",
		"begin 644 a.bin\n#8\n`\nend\n", // shorter than its length says
	} {
		if bs := Find(text); len(bs) != 0 {
			t.Errorf("Find(%q) = %d blocks, want none", text, len(bs))
		}
	}
}

func TestNameIsBaseName(t *testing.T) {
	bs := Find("begin 600 ../../etc/passwd\n#86)C\n`\nend\n")
	if len(bs) != 1 || bs[0].Name != "passwd" || string(bs[0].Data) != "abc" || bs[0].Mode != "600" {
		t.Fatalf("%+v", bs)
	}
	bs = Find("begin 644 C:\\Users\\x\\report.txt\r\n#86)C\r\n`\r\nend\r\n")
	if len(bs) != 1 || bs[0].Name != "report.txt" {
		t.Fatalf("%+v", bs)
	}
}

func FuzzFind(f *testing.F) {
	f.Add(encode("a.bin", []byte("hello world")))
	f.Add("begin 644 x\nM\nend\n")
	f.Fuzz(func(t *testing.T, s string) {
		for _, b := range Find(s) {
			if b.Start < 0 || b.End > len(s) || b.Start >= b.End || b.Name == "" {
				t.Fatalf("bad block %+v in %q", b, s)
			}
		}
	})
}

func TestDecodeBodyWithoutBeginLine(t *testing.T) {
	data, ok := DecodeBody(",2&5L;&\\@6F%M;6%D\n`\n")
	if !ok || string(data) != "Hello Zammad" {
		t.Fatalf("got %q %v", data, ok)
	}
	if _, ok := DecodeBody("Hello, this is text.\n"); ok {
		t.Error("text decoded as uuencoded data")
	}
	if _, ok := DecodeBody("\n`\n"); ok {
		t.Error("no data lines decoded as a file")
	}
}
