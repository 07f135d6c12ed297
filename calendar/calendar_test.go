package calendar

import (
	"testing"
	"time"
)

func mustNew(t *testing.T, zone string, hours, holidays []string) *Calendar {
	t.Helper()
	c, err := New(zone, hours, holidays)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAddAndBetween(t *testing.T) {
	c := mustNew(t, "Europe/Paris", []string{"mon-fri 09:00-12:00,13:00-18:00"}, []string{"2026-12-25"})
	paris, _ := time.LoadLocation("Europe/Paris")
	at := func(s string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04", s, paris)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		from string
		d    time.Duration
		want string
	}{
		{"2026-12-07 10:00", 1 * time.Hour, "2026-12-07 11:00"},    // Monday, inside hours
		{"2026-12-07 11:30", 1 * time.Hour, "2026-12-07 13:30"},    // lunch break skipped
		{"2026-12-07 20:00", 30 * time.Minute, "2026-12-08 09:30"}, // after hours: next morning
		{"2026-12-05 10:00", 2 * time.Hour, "2026-12-07 11:00"},    // Saturday: Monday
		{"2026-12-24 17:00", 2 * time.Hour, "2026-12-28 10:00"},    // Thursday evening, holiday Friday, weekend
		{"2026-12-07 09:00", 16 * time.Hour, "2026-12-08 18:00"},   // two full days
		{"2026-12-07 18:00", 3 * time.Second, "2026-12-08 09:00"},  // a few seconds still wait for opening
		{"2026-12-07 10:00", 0, "2026-12-07 10:00"},                // zero
	} {
		got := c.Add(at(tc.from), tc.d)
		want := at(tc.want)
		if tc.d == 3*time.Second {
			want = want.Add(3 * time.Second)
		}
		if !got.Equal(want) {
			t.Errorf("Add(%s, %s) = %s, want %s", tc.from, tc.d, got.In(paris), want)
		}
		if back := c.Between(at(tc.from), got); back != tc.d {
			t.Errorf("Between(%s, %s) = %s, want %s", tc.from, got.In(paris), back, tc.d)
		}
	}
	// A weekend counts nothing.
	if d := c.Between(at("2026-12-05 00:00"), at("2026-12-07 00:00")); d != 0 {
		t.Errorf("weekend counted %s", d)
	}
}

func TestDaylightSaving(t *testing.T) {
	// 2026-03-29 is the spring change in Paris: the day has 23 hours;
	// a 24/7 calendar in Paris counts wall time.
	c := mustNew(t, "Europe/Paris", []string{"mon-sun 00:00-24:00"}, nil)
	paris, _ := time.LoadLocation("Europe/Paris")
	from := time.Date(2026, 3, 28, 12, 0, 0, 0, paris)
	got := c.Add(from, 24*time.Hour)
	if want := from.Add(24 * time.Hour); !got.Equal(want) {
		t.Errorf("Add across DST = %s, want %s", got, want)
	}
}

func TestNilIsAlwaysOpen(t *testing.T) {
	var c *Calendar
	now := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	if got := c.Add(now, 3*time.Second); !got.Equal(now.Add(3 * time.Second)) {
		t.Errorf("nil Add = %s", got)
	}
	if got := c.Between(now, now.Add(time.Hour)); got != time.Hour {
		t.Errorf("nil Between = %s", got)
	}
}

func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		zone     string
		hours    []string
		holidays []string
	}{
		{"Mars/Olympus", []string{"mon 09:00-17:00"}, nil},
		{"", []string{"monday 09:00-17:00"}, nil},
		{"", []string{"mon 17:00-09:00"}, nil},
		{"", []string{"mon 9-17"}, nil},
		{"", []string{"mon 09:00-12:00,11:00-13:00"}, nil},
		{"", nil, nil},
		{"", []string{"mon 09:00-17:00"}, []string{"25/12/2026"}},
	} {
		if _, err := New(tc.zone, tc.hours, tc.holidays); err == nil {
			t.Errorf("New(%q, %q, %q) accepted", tc.zone, tc.hours, tc.holidays)
		}
	}
}
