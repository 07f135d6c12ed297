package console

import (
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/text/language"
)

// Languages the console speaks; the first is the fallback.
var languages = []string{"en", "fr"}

// messages are the console's words per language; a key missing in a
// language falls back to English, and to the key itself.
var messages = map[string]map[string]string{
	"en": {
		"title":              "deskmail",
		"signin":             "Sign in",
		"signout":            "Sign out",
		"email":              "Email",
		"password":           "Password",
		"signin.failed":      "Wrong address or password.",
		"signin.locked":      "Too many failed sign-ins. Try again in %d seconds.",
		"signin.expired":     "Your session ended. Sign in again.",
		"tickets":            "Tickets",
		"ops":                "Operations",
		"language":           "Language",
		"save":               "Save",
		"filter":             "Filter",
		"search":             "Subject or requester",
		"status":             "Status",
		"channel":            "Channel",
		"assignee":           "Assignee",
		"priority":           "Priority",
		"any":                "Any",
		"unassigned":         "Unassigned",
		"mine":               "Mine",
		"subject":            "Subject",
		"requester":          "Requester",
		"updated":            "Updated",
		"created":            "Created",
		"next":               "Next page",
		"previous":           "Previous page",
		"no.tickets":         "No tickets.",
		"reply":              "Reply",
		"reply.send":         "Send reply",
		"note":               "Private note",
		"note.add":           "Add note",
		"update":             "Update ticket",
		"conversation":       "Conversation",
		"history":            "History",
		"attachments":        "Attachments",
		"private":            "Private note",
		"quoted":             "Quoted text",
		"remote.image":       "Remote image (click to open)",
		"from":               "From",
		"to":                 "To",
		"forbidden":          "You may not see this.",
		"notfound":           "Not found.",
		"csrf":               "This form expired or did not come from this console. Reload the page and try again.",
		"saved":              "Saved.",
		"reply.sent":         "Reply queued for sending.",
		"note.added":         "Note added.",
		"empty.body":         "Write something first.",
		"invalid":            "Not a valid choice.",
		"channels":           "Channels",
		"kind":               "Kind",
		"health":             "Health",
		"today":              "Today",
		"last.poll":          "Last poll",
		"last.error":         "Last error",
		"failures":           "Consecutive failures",
		"oauth.token":        "OAuth token renewed",
		"oauth.expires":      "OAuth access token expires",
		"ok":                 "ok",
		"failing":            "FAILING",
		"never.polled":       "never polled",
		"outbox":             "Outbox",
		"queued":             "queued",
		"retrying":           "retrying",
		"failed":             "failed",
		"sent":               "sent",
		"suppressed":         "suppressed",
		"attempts":           "Attempts",
		"next.attempt":       "Next attempt",
		"retry":              "Retry now",
		"cancel":             "Cancel",
		"raw.failed":         "Mail kept raw after a failure",
		"set.aside":          "Mailbox messages set aside",
		"download":           "Download",
		"reprocess":          "Re-process",
		"bouncing":           "Bouncing contacts",
		"unflag":             "Unflag",
		"sla.breaches":       "SLA breaches",
		"sla.breached":       "SLA missed",
		"due":                "Due",
		"none":               "None.",
		"store":              "Database",
		"webhooks":           "Webhooks",
		"reprocessed":        "Re-processed: %s.",
		"reprocess.failed":   "Re-processing failed again: %s",
		"retried":            "Queued for delivery again.",
		"cancelled":          "Cancelled.",
		"unflagged":          "Flag cleared.",
		"received":           "Received",
		"error":              "Error",
		"folder":             "Folder",
		"reason":             "Reason",
		"mail":               "Mail",
		"ticket":             "Ticket",
		"state":              "State",
		"outbox.stuck":       "Queued, deferred and failed mail",
		"first.response.due": "First response due",
		"resolution.due":     "Resolution due",
		"skip":               "Skip to content",
		"instances":          "Instances serving this database",
		"instance":           "Instance",
		"host":               "Host",
		"heartbeat":          "Heartbeat",
		"folders":            "IMAP folders leased",
		"unheld":             "Folders without a live holder (taken over within 20s)",
	},
	"fr": {
		"signin":             "Se connecter",
		"signout":            "Se déconnecter",
		"email":              "Adresse",
		"password":           "Mot de passe",
		"signin.failed":      "Adresse ou mot de passe incorrect.",
		"signin.locked":      "Trop d'échecs de connexion. Réessayez dans %d secondes.",
		"signin.expired":     "Votre session a pris fin. Reconnectez-vous.",
		"tickets":            "Tickets",
		"ops":                "Exploitation",
		"language":           "Langue",
		"save":               "Enregistrer",
		"filter":             "Filtrer",
		"search":             "Objet ou demandeur",
		"status":             "Statut",
		"channel":            "Canal",
		"assignee":           "Agent assigné",
		"priority":           "Priorité",
		"any":                "Tous",
		"unassigned":         "Non assigné",
		"mine":               "Les miens",
		"subject":            "Objet",
		"requester":          "Demandeur",
		"updated":            "Mis à jour",
		"created":            "Créé",
		"next":               "Page suivante",
		"previous":           "Page précédente",
		"no.tickets":         "Aucun ticket.",
		"reply":              "Répondre",
		"reply.send":         "Envoyer la réponse",
		"note":               "Note privée",
		"note.add":           "Ajouter la note",
		"update":             "Modifier le ticket",
		"conversation":       "Conversation",
		"history":            "Historique",
		"attachments":        "Pièces jointes",
		"private":            "Note privée",
		"quoted":             "Texte cité",
		"remote.image":       "Image distante (cliquer pour l'ouvrir)",
		"from":               "De",
		"to":                 "À",
		"forbidden":          "Vous n'avez pas accès à cette page.",
		"notfound":           "Introuvable.",
		"csrf":               "Ce formulaire a expiré ou ne vient pas de cette console. Rechargez la page et réessayez.",
		"saved":              "Enregistré.",
		"reply.sent":         "Réponse en file d'envoi.",
		"note.added":         "Note ajoutée.",
		"empty.body":         "Écrivez d'abord quelque chose.",
		"invalid":            "Choix non valide.",
		"channels":           "Canaux",
		"kind":               "Type",
		"health":             "État",
		"today":              "Aujourd'hui",
		"last.poll":          "Dernière relève",
		"last.error":         "Dernière erreur",
		"failures":           "Échecs consécutifs",
		"oauth.token":        "Jeton OAuth renouvelé",
		"oauth.expires":      "Expiration du jeton d'accès OAuth",
		"ok":                 "ok",
		"failing":            "EN ÉCHEC",
		"never.polled":       "jamais relevé",
		"outbox":             "File d'envoi",
		"queued":             "en file",
		"retrying":           "en nouvel essai",
		"failed":             "en échec",
		"sent":               "envoyés",
		"suppressed":         "supprimés",
		"attempts":           "Tentatives",
		"next.attempt":       "Prochain essai",
		"retry":              "Réessayer",
		"cancel":             "Annuler",
		"raw.failed":         "Courriels conservés bruts après un échec",
		"set.aside":          "Messages de boîte mis de côté",
		"download":           "Télécharger",
		"reprocess":          "Retraiter",
		"bouncing":           "Contacts en rebond",
		"unflag":             "Lever le signalement",
		"sla.breaches":       "Dépassements de SLA",
		"sla.breached":       "SLA dépassé",
		"due":                "Échéance",
		"none":               "Aucun.",
		"store":              "Base de données",
		"webhooks":           "Webhooks",
		"reprocessed":        "Retraité : %s.",
		"reprocess.failed":   "Le retraitement a encore échoué : %s",
		"retried":            "Remis en file d'envoi.",
		"cancelled":          "Annulé.",
		"unflagged":          "Signalement levé.",
		"received":           "Reçu",
		"error":              "Erreur",
		"folder":             "Dossier",
		"reason":             "Raison",
		"mail":               "Courriel",
		"ticket":             "Ticket",
		"state":              "État",
		"outbox.stuck":       "Courriels en file, différés et en échec",
		"first.response.due": "Première réponse attendue",
		"resolution.due":     "Résolution attendue",
		"skip":               "Aller au contenu",
		"instances":          "Instances servant cette base",
		"instance":           "Instance",
		"host":               "Hôte",
		"heartbeat":          "Dernier signe de vie",
		"folders":            "Dossiers IMAP détenus",
		"unheld":             "Dossiers sans détenteur vivant (repris sous 20 s)",
	},
}

// translate returns the word for key in lang.
func translate(lang, key string) string {
	if m, ok := messages[lang]; ok {
		if s, ok := m[key]; ok {
			return s
		}
	}
	if s, ok := messages["en"][key]; ok {
		return s
	}
	return key
}

// tf formats the word for key in lang with args.
func tf(lang, key string, args ...any) string { return fmt.Sprintf(translate(lang, key), args...) }

// supported returns lang when the console speaks it, else "".
func supported(lang string) string {
	lang = strings.ToLower(strings.TrimSpace(lang))
	if i := strings.IndexAny(lang, "-_"); i > 0 {
		lang = lang[:i]
	}
	for _, l := range languages {
		if l == lang {
			return l
		}
	}
	return ""
}

// requestLanguage is the agent's language, else the first of
// Accept-Language the console speaks, else English.
func requestLanguage(r *http.Request, agentLang string) string {
	if l := supported(agentLang); l != "" {
		return l
	}
	tags, _, _ := language.ParseAcceptLanguage(r.Header.Get("Accept-Language"))
	for _, t := range tags {
		base, _ := t.Base()
		if l := supported(base.String()); l != "" {
			return l
		}
	}
	return languages[0]
}
