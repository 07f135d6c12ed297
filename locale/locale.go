// Package locale is deskmail's one table of words in the languages it
// writes and reads: the names of status categories and priorities in
// outgoing mail, the words agents may use for them in mail commands,
// month names for dates, and the few phrases the code writes itself.
// Outgoing mail templates live beside it, per language, in
// outbound/templates; a language added there through templates_dir
// borrows English words from this table.
//
// The built-in languages are English, French, German and Spanish.
package locale

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Builtin are the languages with built-in templates and words.
var Builtin = []string{"en", "fr", "de", "es"}

// Categories of ticket status, as threading names them.
const (
	Open     = "open"
	Pending  = "pending"
	Resolved = "resolved"
	Closed   = "closed"
)

// words is one language's entry of the table.
type words struct {
	// status names each category in outgoing mail.
	status map[string]string
	// statusAliases are the words a command may use for a category
	// (lower case), besides the names above.
	statusAliases map[string][]string
	// priority names priorities 1-4 (index 0 unused).
	priority []string
	// priorityAliases are further command words for priorities 1-4.
	priorityAliases [5][]string
	months          []string
	// date formats a day, month name, year, hour, minute.
	date      string
	noSubject string
}

var table = map[string]words{
	"en": {
		status:          map[string]string{Open: "Open", Pending: "Pending", Resolved: "Resolved", Closed: "Closed"},
		statusAliases:   map[string][]string{Open: {"opened", "reopen"}, Pending: {"waiting", "on hold"}, Resolved: {"solved", "resolve"}, Closed: {"close"}},
		priority:        []string{"", "Low", "Medium", "High", "Urgent"},
		priorityAliases: [5][]string{2: {"normal"}},
		months:          []string{"January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"},
		date:            "%[1]d %[2]s %[3]d at %02[4]d:%02[5]d UTC",
		noSubject:       "(no subject)",
	},
	"fr": {
		status:          map[string]string{Open: "Ouvert", Pending: "En attente", Resolved: "Résolu", Closed: "Fermé"},
		statusAliases:   map[string][]string{Open: {"ouverte", "rouvrir"}, Pending: {"attente"}, Resolved: {"résolue", "resolu", "resolue"}, Closed: {"fermée", "ferme", "clos"}},
		priority:        []string{"", "Basse", "Moyenne", "Haute", "Urgente"},
		priorityAliases: [5][]string{1: {"bas", "faible"}, 2: {"moyen", "normale"}, 3: {"haut", "élevée", "elevee"}},
		months:          []string{"janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre", "décembre"},
		date:            "%[1]d %[2]s %[3]d à %02[4]d:%02[5]d UTC",
		noSubject:       "(sans objet)",
	},
	"de": {
		status:        map[string]string{Open: "Offen", Pending: "Wartend", Resolved: "Gelöst", Closed: "Geschlossen"},
		statusAliases: map[string][]string{Resolved: {"geloest"}},
		priority:      []string{"", "Niedrig", "Mittel", "Hoch", "Dringend"},
		months:        []string{"Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober", "November", "Dezember"},
		date:          "%[1]d. %[2]s %[3]d um %02[4]d:%02[5]d UTC",
		noSubject:     "(kein Betreff)",
	},
	"es": {
		status:    map[string]string{Open: "Abierto", Pending: "Pendiente", Resolved: "Resuelto", Closed: "Cerrado"},
		priority:  []string{"", "Baja", "Media", "Alta", "Urgente"},
		months:    []string{"enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre", "noviembre", "diciembre"},
		date:      "%[1]d de %[2]s de %[3]d a las %02[4]d:%02[5]d UTC",
		noSubject: "(sin asunto)",
	},
}

// of returns the entry of lang, English when the table has none.
func of(lang string) words {
	if w, ok := table[strings.ToLower(lang)]; ok {
		return w
	}
	return table["en"]
}

// Has reports whether lang is a built-in language.
func Has(lang string) bool {
	_, ok := table[strings.ToLower(lang)]
	return ok
}

// StatusName names a status category in lang ("" for an unknown one).
func StatusName(lang, category string) string {
	return of(lang).status[category]
}

// PriorityName names priority p (1-4) in lang, or writes the number.
func PriorityName(lang string, p int) string {
	names := of(lang).priority
	if p >= 1 && p < len(names) {
		return names[p]
	}
	return strconv.Itoa(p)
}

// Date writes t, in UTC, the way lang writes dates.
func Date(lang string, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	t = t.UTC()
	w := of(lang)
	return fmt.Sprintf(w.date, t.Day(), w.months[t.Month()-1], t.Year(), t.Hour(), t.Minute())
}

// NoSubject is what lang writes for a mail without a subject.
func NoSubject(lang string) string { return of(lang).noSubject }

// StatusWords maps every word that names a status category in any
// built-in language (lower case, the category's names included) to
// the category.
func StatusWords() map[string]string {
	out := map[string]string{}
	for _, w := range table {
		for cat, name := range w.status {
			out[strings.ToLower(name)] = cat
			out[cat] = cat
			for _, a := range w.statusAliases[cat] {
				out[a] = cat
			}
		}
	}
	return out
}

// PriorityWords maps every word that names a priority in any built-in
// language (lower case) to its number.
func PriorityWords() map[string]int {
	out := map[string]int{}
	for _, w := range table {
		for p := 1; p < len(w.priority); p++ {
			out[strings.ToLower(w.priority[p])] = p
			for _, a := range w.priorityAliases[p] {
				out[a] = p
			}
		}
	}
	return out
}
