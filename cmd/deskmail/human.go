package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/deskmail/deskmail/store"
)

// What people read: the names of priorities and statuses, history
// entries as sentences, sizes. JSON output never goes through here.

var priorityWords = []string{"", "low", "medium", "high", "urgent"}

// priorityLabel is a priority as people read it: "3 (high)".
func priorityLabel(p int) string {
	if p >= 1 && p < len(priorityWords) {
		return fmt.Sprintf("%d (%s)", p, priorityWords[p])
	}
	return strconv.Itoa(p)
}

// priorityWord is the priority's name alone ("high"), for tables.
func priorityWord(p int) string {
	if p >= 1 && p < len(priorityWords) {
		return priorityWords[p]
	}
	return strconv.Itoa(p)
}

// statusNames maps status codes to their names (built-in and custom, as
// stored).
func statusNames(tx *store.Tx) (map[int]string, error) {
	names := map[int]string{2: "Open", 3: "Pending", 4: "Resolved", 5: "Closed"}
	ss, err := tx.Statuses()
	if err != nil {
		return nil, err
	}
	for _, s := range ss {
		names[s.Code] = s.Name
	}
	return names, nil
}

// statusLabel is a status as people read it: "4 (Resolved)".
func statusLabel(code int, names map[int]string) string {
	if n := names[code]; n != "" {
		return fmt.Sprintf("%d (%s)", code, n)
	}
	return strconv.Itoa(code)
}

// historySentence says one history entry as a sentence: who did what
// ("alice@example.com changed the status from 2 (Open) to 4
// (Resolved)"), or who and the entry's own note ("jane@example.com:
// ticket created from mail").
func historySentence(h store.History, statuses map[int]string) string {
	who := h.Actor
	if who == "" {
		who = h.ActorType
	}
	if who == "" {
		who = "deskmail"
	}
	oldV, newV := deref(h.OldValue), deref(h.NewValue)
	var what string
	switch h.Action {
	case "status_changed":
		what = fmt.Sprintf("changed the status from %s to %s", statusLabel(atoi(oldV), statuses), statusLabel(atoi(newV), statuses))
	case "priority_changed":
		what = fmt.Sprintf("changed the priority from %s to %s", priorityLabel(atoi(oldV)), priorityLabel(atoi(newV)))
	case "assigned":
		what = "assigned the ticket to " + newV
	case "unassigned":
		what = "unassigned " + oldV
	case "tag_added":
		what = "added the tag " + newV
	case "tag_removed":
		what = "removed the tag " + oldV
	case "cc_added":
		what = "added " + newV + " in cc"
	case "cc_removed":
		what = "removed " + oldV + " from cc"
	default:
		if h.Field != "" {
			what = fmt.Sprintf("changed %s from %q to %q", h.Field, oldV, newV)
		}
	}
	switch {
	case what != "" && h.Note != "":
		return who + " " + what + " (" + h.Note + ")"
	case what != "":
		return who + " " + what
	case h.Note != "":
		return who + ": " + h.Note
	}
	return who + ": " + strings.ReplaceAll(h.Action, "_", " ")
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// byteSize is a size as people read it: "512 bytes", "1.4 MB".
func byteSize(n int64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d bytes", n)
	case n < 1000*1000:
		return fmt.Sprintf("%.1f kB", float64(n)/1000)
	case n < 1000*1000*1000:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.2f GB", float64(n)/1e9)
}

// mailbox is "Name <address>", or the address alone without a name.
func mailbox(name, addr string) string {
	if strings.TrimSpace(name) == "" {
		return addr
	}
	return name + " <" + addr + ">"
}
