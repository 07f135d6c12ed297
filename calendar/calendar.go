// Package calendar counts time inside business hours: a time zone,
// weekly opening hours and holidays. SLA targets ("4h", "2d") are
// durations of business time; a Calendar turns them into due times and
// measures the business time between two instants. A nil *Calendar is
// the 24/7 calendar: every duration counts.
//
// Days are walked in the calendar's time zone with time.Date, so a
// daylight-saving change shortens or lengthens the day it falls on
// exactly as a wall clock does.
package calendar

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Calendar is a set of weekly opening hours in one time zone, minus
// holidays. It is immutable and safe for concurrent use.
type Calendar struct {
	loc *time.Location
	// week[d] are the opening spans of weekday d, sorted, as minutes
	// since midnight [from, to).
	week     [7][]span
	holidays map[string]bool // "2006-01-02" in loc
}

type span struct{ from, to int }

// maxDays bounds every walk over days (ten years): a calendar with
// almost no opening hours cannot make a computation loop for long.
const maxDays = 3660

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// New builds a calendar. zone is an IANA time zone ("Europe/Paris";
// "" is UTC); each line of hours is "DAYS HH:MM-HH:MM[,HH:MM-HH:MM…]"
// where DAYS is a day ("mon"), a range ("mon-fri") or a list
// ("mon,wed"); holidays are dates "2006-01-02". At least one opening
// span is needed.
func New(zone string, hours, holidays []string) (*Calendar, error) {
	loc := time.UTC
	if zone != "" {
		l, err := time.LoadLocation(zone)
		if err != nil {
			return nil, fmt.Errorf("time zone %q is unknown (write an IANA name such as Europe/Paris)", zone)
		}
		loc = l
	}
	c := &Calendar{loc: loc, holidays: map[string]bool{}}
	for _, line := range hours {
		days, spans, err := parseHours(line)
		if err != nil {
			return nil, err
		}
		for _, d := range days {
			c.week[d] = append(c.week[d], spans...)
		}
	}
	n := 0
	for d := range c.week {
		sort.Slice(c.week[d], func(i, j int) bool { return c.week[d][i].from < c.week[d][j].from })
		for i := 1; i < len(c.week[d]); i++ {
			if c.week[d][i].from < c.week[d][i-1].to {
				return nil, fmt.Errorf("opening hours of %s overlap", time.Weekday(d))
			}
		}
		n += len(c.week[d])
	}
	if n == 0 {
		return nil, fmt.Errorf(`no opening hours (write for example "mon-fri 09:00-18:00")`)
	}
	for _, h := range holidays {
		d, err := time.Parse("2006-01-02", strings.TrimSpace(h))
		if err != nil {
			return nil, fmt.Errorf("holiday %q is not a date (write 2006-01-02)", h)
		}
		c.holidays[d.Format("2006-01-02")] = true
	}
	return c, nil
}

// parseHours parses one line of opening hours: the weekdays it names
// and the spans (minutes since midnight).
func parseHours(line string) ([]time.Weekday, []span, error) {
	f := strings.Fields(strings.ToLower(line))
	if len(f) != 2 {
		return nil, nil, fmt.Errorf(`hours %q: write DAYS HH:MM-HH:MM, for example "mon-fri 09:00-18:00"`, line)
	}
	var days []time.Weekday
	for _, part := range strings.Split(f[0], ",") {
		a, b, isRange := strings.Cut(part, "-")
		da, ok := dayNames[a]
		if !ok {
			return nil, nil, fmt.Errorf("hours %q: %q is not a day (mon, tue, wed, thu, fri, sat, sun)", line, a)
		}
		if !isRange {
			days = append(days, da)
			continue
		}
		db, ok := dayNames[b]
		if !ok {
			return nil, nil, fmt.Errorf("hours %q: %q is not a day (mon, tue, wed, thu, fri, sat, sun)", line, b)
		}
		for d := da; ; d = (d + 1) % 7 {
			days = append(days, d)
			if d == db {
				break
			}
		}
	}
	var spans []span
	for _, part := range strings.Split(f[1], ",") {
		a, b, ok := strings.Cut(part, "-")
		from, err1 := minutes(a)
		to, err2 := minutes(b)
		if !ok || err1 != nil || err2 != nil {
			return nil, nil, fmt.Errorf("hours %q: %q is not a span HH:MM-HH:MM", line, part)
		}
		if to <= from {
			return nil, nil, fmt.Errorf("hours %q: %q ends before it starts (a span ends the same day; 24:00 is midnight)", line, part)
		}
		spans = append(spans, span{from, to})
	}
	return days, spans, nil
}

func minutes(s string) (int, error) {
	var h, m int
	if _, err := fmt.Sscanf(s, "%d:%d", &h, &m); err != nil || h < 0 || m < 0 || m > 59 || h > 24 || (h == 24 && m != 0) || len(s) != 5 {
		return 0, fmt.Errorf("bad time %q", s)
	}
	return h*60 + m, nil
}

// Location is the calendar's time zone.
func (c *Calendar) Location() *time.Location {
	if c == nil {
		return time.UTC
	}
	return c.loc
}

// day returns the opening spans of the day that starts at midnight
// (in loc) as instants.
func (c *Calendar) day(midnight time.Time) [][2]time.Time {
	if c.holidays[midnight.Format("2006-01-02")] {
		return nil
	}
	y, m, d := midnight.Date()
	var out [][2]time.Time
	for _, s := range c.week[midnight.Weekday()] {
		from := time.Date(y, m, d, s.from/60, s.from%60, 0, 0, c.loc)
		to := time.Date(y, m, d, s.to/60, s.to%60, 0, 0, c.loc)
		out = append(out, [2]time.Time{from, to})
	}
	return out
}

func midnightOf(t time.Time, loc *time.Location) time.Time {
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, loc)
}

// Add returns the instant when d of business time has passed after
// from. A d of zero or less returns from.
func (c *Calendar) Add(from time.Time, d time.Duration) time.Time {
	if d <= 0 {
		return from
	}
	if c == nil {
		return from.Add(d)
	}
	day := midnightOf(from, c.loc)
	for range maxDays {
		for _, s := range c.day(day) {
			if !from.Before(s[1]) {
				continue
			}
			start := s[0]
			if from.After(start) {
				start = from
			}
			if avail := s[1].Sub(start); d <= avail {
				return start.Add(d)
			} else {
				d -= avail
			}
		}
		y, m, dd := day.Date()
		day = time.Date(y, m, dd+1, 0, 0, 0, 0, c.loc)
	}
	return day.Add(d)
}

// Between returns the business time from a to b (zero when b is not
// after a).
func (c *Calendar) Between(a, b time.Time) time.Duration {
	if !b.After(a) {
		return 0
	}
	if c == nil {
		return b.Sub(a)
	}
	var total time.Duration
	day := midnightOf(a, c.loc)
	for range maxDays {
		if !day.Before(b) {
			break
		}
		for _, s := range c.day(day) {
			from, to := s[0], s[1]
			if from.Before(a) {
				from = a
			}
			if to.After(b) {
				to = b
			}
			if to.After(from) {
				total += to.Sub(from)
			}
		}
		y, m, dd := day.Date()
		day = time.Date(y, m, dd+1, 0, 0, 0, 0, c.loc)
	}
	return total
}
