package ingest

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxFilenameBytes is the longest file name most file systems accept.
const maxFilenameBytes = 255

// SafeFilename turns a sender-supplied attachment name into one that is
// safe to use as a single path element: path separators become "_",
// control and bidi-override characters are dropped, leading dots and
// blanks (hidden files, "..") are removed, trailing dots and blanks
// (which Windows strips) too, and the result is cut to at most 255
// bytes at a rune boundary, keeping the extension. It returns "" when
// nothing usable is left; callers then name the file from its type.
func SafeFilename(name string) string {
	name = strings.ToValidUTF8(name, "\uFFFD")
	var b strings.Builder
	b.Grow(len(name))
	for _, r := range name {
		switch {
		case r == '/' || r == '\\':
			b.WriteRune('_')
		case r == '\t' || r == '\n' || r == '\r':
			b.WriteRune(' ')
		case unicode.IsControl(r), unicode.Is(unicode.Cf, r), r == utf8.RuneError:
			// C0/C1 controls, DEL, and format characters such as
			// U+202E RIGHT-TO-LEFT OVERRIDE that disguise extensions.
		default:
			b.WriteRune(r)
		}
	}
	s := strings.TrimLeft(b.String(), ". ")
	s = strings.TrimRight(s, ". ")
	if s == "" {
		return ""
	}
	if isWindowsReserved(s) {
		s = "_" + s
	}
	return truncateFilename(s, maxFilenameBytes)
}

// truncateFilename cuts name to at most max bytes, keeping a short
// extension and never splitting a UTF-8 sequence.
func truncateFilename(name string, max int) string {
	if len(name) <= max {
		return name
	}
	ext := ""
	if i := strings.LastIndexByte(name, '.'); i > 0 && len(name)-i <= 16 {
		ext = name[i:]
	}
	stem := name[:len(name)-len(ext)]
	limit := max - len(ext)
	for limit > 0 && !utf8.RuneStart(stem[limit]) {
		limit--
	}
	return strings.TrimRight(stem[:limit], ". ") + ext
}

// isWindowsReserved reports whether the stem of name is a device name
// (CON, NUL, COM1, ...) that Windows will not create as a file.
func isWindowsReserved(name string) bool {
	stem := name
	if i := strings.IndexByte(stem, '.'); i >= 0 {
		stem = stem[:i]
	}
	switch strings.ToUpper(strings.TrimSpace(stem)) {
	case "CON", "PRN", "AUX", "NUL",
		"COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9",
		"LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9":
		return true
	}
	return false
}

// extensionFor returns a file extension (with the dot) for a media
// type. The table is fixed so that names do not depend on the host's
// mime.types.
func extensionFor(contentType string) string {
	switch strings.ToLower(contentType) {
	case "message/rfc822", "message/global":
		return ".eml"
	case "text/plain", "message/delivery-status", "message/global-delivery-status",
		"text/rfc822-headers", "message/disposition-notification", "message/feedback-report":
		return ".txt"
	case "text/html":
		return ".html"
	case "text/calendar", "application/ics":
		return ".ics"
	case "text/csv":
		return ".csv"
	case "text/vcard", "text/x-vcard":
		return ".vcf"
	case "image/jpeg", "image/jpg", "image/pjpeg":
		return ".jpg"
	case "image/png":
		return ".png"
	case "image/gif":
		return ".gif"
	case "image/webp":
		return ".webp"
	case "image/bmp":
		return ".bmp"
	case "image/tiff":
		return ".tif"
	case "image/svg+xml":
		return ".svg"
	case "application/pdf":
		return ".pdf"
	case "application/zip", "application/x-zip-compressed":
		return ".zip"
	case "application/ms-tnef", "application/vnd.ms-tnef":
		return ".dat"
	case "application/msword":
		return ".doc"
	case "application/vnd.openxmlformats-officedocument.wordprocessingml.document":
		return ".docx"
	case "application/vnd.ms-excel":
		return ".xls"
	case "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":
		return ".xlsx"
	case "application/json":
		return ".json"
	case "application/xml", "text/xml":
		return ".xml"
	case "application/pgp-signature":
		return ".asc"
	case "application/pkcs7-signature", "application/x-pkcs7-signature":
		return ".p7s"
	case "audio/mpeg":
		return ".mp3"
	case "video/mp4":
		return ".mp4"
	}
	return ".bin"
}
