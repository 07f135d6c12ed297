package bluemonday

import (
	"regexp"
	"sync"
)

// Pattern is a regular expression compiled the first time it is used.
//
// deskmail's copy: upstream compiles every pattern of this package at
// program start, which cost each short-lived deskmail process (one per
// mail behind an MTA pipe) more than a millisecond of CPU whether or not
// the mail had any HTML.
type Pattern struct {
	once sync.Once
	src  string
	re   *regexp.Regexp
}

// lazy returns src compiled on first use; it panics then if src is not
// a valid regular expression, as regexp.MustCompile does.
func lazy(src string) *Pattern { return &Pattern{src: src} }

// Regexp returns the compiled expression.
func (p *Pattern) Regexp() *regexp.Regexp {
	p.once.Do(func() { p.re = regexp.MustCompile(p.src) })
	return p.re
}

// MatchString reports whether s contains a match of the pattern.
func (p *Pattern) MatchString(s string) bool { return p.Regexp().MatchString(s) }

// FindString returns the leftmost match in s ("" if none).
func (p *Pattern) FindString(s string) string { return p.Regexp().FindString(s) }

// FindStringIndex returns the location of the leftmost match in s.
func (p *Pattern) FindStringIndex(s string) []int { return p.Regexp().FindStringIndex(s) }
