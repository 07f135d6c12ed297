package search

import (
	"fmt"
	"strings"
)

type tokKind int

const (
	tokEOF tokKind = iota
	tokError
	tokIdent
	tokNumber
	tokString
	tokNull
	tokAnd
	tokOr
	tokLParen
	tokRParen
	tokColon
	tokGe
	tokLe
)

// token is one lexeme; pos is its byte offset from 0, text the
// identifier, the number as written, the unescaped string or, for
// tokError, the message.
type token struct {
	kind tokKind
	pos  int
	text string
}

// describe names a token in an error message.
func (t token) describe() string {
	switch t.kind {
	case tokEOF:
		return "the end of the query"
	case tokString:
		return "the string '" + t.text + "'"
	case tokError:
		return t.text
	}
	return fmt.Sprintf("%q", t.text)
}

type lexer struct {
	src string
	pos int
}

func isIdentByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func (l *lexer) next() token {
	for l.pos < len(l.src) && (l.src[l.pos] == ' ' || l.src[l.pos] == '\t' || l.src[l.pos] == '\n' || l.src[l.pos] == '\r') {
		l.pos++
	}
	start := l.pos
	if l.pos >= len(l.src) {
		return token{kind: tokEOF, pos: start}
	}
	c := l.src[l.pos]
	switch {
	case c == '(':
		l.pos++
		return token{kind: tokLParen, pos: start, text: "("}
	case c == ')':
		l.pos++
		return token{kind: tokRParen, pos: start, text: ")"}
	case c == ':':
		l.pos++
		if l.pos < len(l.src) && l.src[l.pos] == '>' {
			l.pos++
			return token{kind: tokGe, pos: start, text: ":>"}
		}
		if l.pos < len(l.src) && l.src[l.pos] == '<' {
			l.pos++
			return token{kind: tokLe, pos: start, text: ":<"}
		}
		return token{kind: tokColon, pos: start, text: ":"}
	case c == '\'':
		return l.str()
	case c == '-' || isDigit(c):
		return l.number()
	case isIdentByte(c):
		for l.pos < len(l.src) && isIdentByte(l.src[l.pos]) {
			l.pos++
		}
		word := l.src[start:l.pos]
		switch word {
		case "AND":
			return token{kind: tokAnd, pos: start, text: word}
		case "OR":
			return token{kind: tokOr, pos: start, text: word}
		case "null":
			return token{kind: tokNull, pos: start, text: word}
		}
		return token{kind: tokIdent, pos: start, text: word}
	case c == '"':
		l.pos = len(l.src)
		return token{kind: tokError, pos: start, text: "Strings are written in single quotes ('…') inside the double-quoted query"}
	}
	l.pos = len(l.src)
	r := []rune(l.src[start:])[0]
	return token{kind: tokError, pos: start, text: fmt.Sprintf("Unexpected character %q", r)}
}

// number reads -?digits[.digits].
func (l *lexer) number() token {
	start := l.pos
	if l.src[l.pos] == '-' {
		l.pos++
	}
	digits := l.pos
	for l.pos < len(l.src) && isDigit(l.src[l.pos]) {
		l.pos++
	}
	if l.pos < len(l.src) && l.src[l.pos] == '.' {
		l.pos++
		frac := l.pos
		for l.pos < len(l.src) && isDigit(l.src[l.pos]) {
			l.pos++
		}
		if l.pos == frac {
			l.pos = len(l.src)
			return token{kind: tokError, pos: start, text: "A number needs digits after its decimal point"}
		}
	}
	if l.pos == digits || l.pos < len(l.src) && isIdentByte(l.src[l.pos]) {
		for l.pos < len(l.src) && isIdentByte(l.src[l.pos]) {
			l.pos++
		}
		bad := l.src[start:l.pos]
		l.pos = len(l.src)
		return token{kind: tokError, pos: start, text: fmt.Sprintf("%q is not a number (strings are written in single quotes)", bad)}
	}
	return token{kind: tokNumber, pos: start, text: l.src[start:l.pos]}
}

// str reads a single-quoted string; a backslash escapes the next
// character.
func (l *lexer) str() token {
	start := l.pos
	l.pos++
	var b strings.Builder
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		switch c {
		case '\\':
			if l.pos+1 >= len(l.src) {
				l.pos = len(l.src)
				return token{kind: tokError, pos: start, text: "The string ends with a lone backslash"}
			}
			b.WriteByte(l.src[l.pos+1])
			l.pos += 2
		case '\'':
			l.pos++
			return token{kind: tokString, pos: start, text: b.String()}
		default:
			b.WriteByte(c)
			l.pos++
		}
	}
	return token{kind: tokError, pos: start, text: "The string is not closed with a single quote"}
}
