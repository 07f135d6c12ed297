package outbound

// appendQP appends s to dst encoded as quoted-printable text, byte for
// byte as mime/quotedprintable's Writer (Binary false) writes it when
// given s in one Write and then closed: line breaks (LF, CR or CRLF)
// become CRLF, lines are at most 76 characters with "=" soft breaks,
// '=' and bytes outside printable ASCII are "=XX", a space or tab
// before a line break or at the end is encoded. It is that Writer's
// state machine run on dst directly: the Writer costs a method call
// and a copy per byte, and rendering outbound mail is done inside the
// commit of the message that causes it.
func appendQP(dst []byte, s string) []byte {
	const (
		lineMaxLen = 76
		upperhex   = "0123456789ABCDEF"
	)
	start := len(dst) // where the current line begins
	cr := false
	softBreak := func() {
		dst = append(dst, '=', '\r', '\n')
		start = len(dst)
	}
	encode := func(b byte) {
		if lineMaxLen-1-(len(dst)-start) < 3 {
			softBreak()
		}
		dst = append(dst, '=', upperhex[b>>4], upperhex[b&0x0f])
	}
	// lastByte encodes a trailing space or tab of the current line.
	lastByte := func() {
		if len(dst) == start {
			return
		}
		if b := dst[len(dst)-1]; b == ' ' || b == '\t' {
			dst = dst[:len(dst)-1]
			encode(b)
		}
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case b == '\n' || b == '\r':
			if cr && b == '\n' {
				cr = false
				continue
			}
			if b == '\r' {
				cr = true
			}
			lastByte()
			dst = append(dst, '\r', '\n')
			start = len(dst)
		case plainQP(b):
			// A run of bytes written as they are, copied a line's room
			// at a time.
			j := i + 1
			for j < len(s) && plainQP(s[j]) {
				j++
			}
			for i < j {
				if len(dst)-start == lineMaxLen-1 {
					softBreak()
				}
				n := min(j-i, lineMaxLen-1-(len(dst)-start))
				dst = append(dst, s[i:i+n]...)
				i += n
			}
			i--
			cr = false
		default:
			// Like the Writer's encode, this leaves cr as it was.
			encode(b)
		}
	}
	lastByte()
	return dst
}

// plainQP reports whether quoted-printable writes b as it is (a space
// or tab only when no line break follows: see lastByte).
func plainQP(b byte) bool {
	return b >= '!' && b <= '~' && b != '=' || b == ' ' || b == '\t'
}
