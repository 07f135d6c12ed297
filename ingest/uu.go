package ingest

import (
	"net/textproto"
	"path"
	"strings"

	"github.com/deskmail/deskmail/ingest/uuencode"
	"github.com/jhillyerd/enmime/v2"
)

// uuEncoded reports whether a part's Content-Transfer-Encoding is one
// of the names mailers give uuencoding; enmime leaves such content
// undecoded (with a warning) and the walker decodes it.
func uuEncoded(part *enmime.Part) bool {
	switch strings.ToLower(strings.TrimSpace(part.Header.Get("Content-Transfer-Encoding"))) {
	case "x-uuencode", "uuencode", "x-uue", "uue":
		return true
	}
	return false
}

// uuPart handles a part sent with a uuencode transfer encoding: each
// file in it becomes an attachment, and text around the files (if the
// part is text) stays text. It reports false when the part holds no
// complete uuencoded file; the part is then handled as usual.
func (w *walker) uuPart(part *enmime.Part) bool {
	content := string(part.Content)
	blocks := uuencode.Find(content)
	if len(blocks) == 0 {
		data, ok := uuencode.DecodeBody(content)
		if !ok {
			return false
		}
		blocks = []uuencode.Block{{Name: part.FileName, Data: data, End: len(content)}}
	}
	for _, b := range blocks {
		name := b.Name
		if len(blocks) == 1 && part.FileName != "" || name == "" {
			name = part.FileName
		}
		ct := part.ContentType
		if ct == "" || strings.HasPrefix(ct, "text/") || ct == "application/octet-stream" {
			ct = uuContentType(name)
		}
		w.atts = append(w.atts, uuAttachment(name, ct, b.Data))
	}
	if t := strings.TrimSpace(uuRest(content, blocks)); t != "" && bodyKind(part) == "text" {
		rest := *part
		rest.Content = []byte(t)
		w.texts = append(w.texts, w.p.partText(&rest))
	}
	if w.p.uuDecoded == nil {
		w.p.uuDecoded = map[*enmime.Part]bool{}
	}
	w.p.uuDecoded[part] = true
	return true
}

// uuInline moves the uuencoded files written inline in a text body
// ("begin 644 name" … "end") to attachments and returns the text
// without them.
func (w *walker) uuInline(text string) string {
	if !strings.Contains(text, "begin ") {
		return text
	}
	blocks := uuencode.Find(text)
	if len(blocks) == 0 {
		return text
	}
	for _, b := range blocks {
		w.atts = append(w.atts, uuAttachment(b.Name, uuContentType(b.Name), b.Data))
	}
	w.p.m.warn("attachment: %d uuencoded file(s) in the text moved to attachments", len(blocks))
	return uuRest(text, blocks)
}

// uuRest is text without the blocks.
func uuRest(text string, blocks []uuencode.Block) string {
	var b strings.Builder
	at := 0
	for _, bl := range blocks {
		b.WriteString(text[at:bl.Start])
		at = bl.End
	}
	b.WriteString(text[at:])
	return b.String()
}

// uuAttachment is a synthetic part for a decoded file, which the
// attachment rules (safe names, size limit) then handle like any other.
func uuAttachment(name, contentType string, data []byte) *enmime.Part {
	h := textproto.MIMEHeader{}
	return &enmime.Part{
		Header:      h,
		ContentType: contentType,
		Disposition: "attachment",
		FileName:    name,
		Content:     data,
	}
}

// uuTypes are the content types of decoded files by extension: a fixed
// table, so that the result does not depend on the host's mime.types.
var uuTypes = map[string]string{
	".pdf": "application/pdf", ".zip": "application/zip", ".gz": "application/gzip",
	".tar": "application/x-tar", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
	".gif": "image/gif", ".txt": "text/plain", ".log": "text/plain", ".csv": "text/csv",
	".doc": "application/msword", ".xls": "application/vnd.ms-excel",
	".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
	".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

// uuContentType guesses a decoded file's type from its name.
func uuContentType(name string) string {
	if t, ok := uuTypes[strings.ToLower(path.Ext(name))]; ok {
		return t
	}
	return "application/octet-stream"
}
