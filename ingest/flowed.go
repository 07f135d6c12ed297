package ingest

import "strings"

// decodeFlowed reflows a text/plain; format=flowed body (RFC 3676):
// lines ending in a space are soft breaks and join the next line of the
// same quote depth; with delsp=yes that trailing space is removed too
// (section 4.2). Space-stuffing is undone, the signature separator
// "-- " stays a hard break, and quoted lines keep a "> " prefix per
// level.
func decodeFlowed(text string, delSp bool) string {
	text = strings.ReplaceAll(text, "\r\n", "\n")
	trailing := strings.HasSuffix(text, "\n")
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	var out strings.Builder
	out.Grow(len(text))
	var para strings.Builder
	paraDepth := -1 // quote depth of the paragraph being joined; -1 none

	flush := func() {
		if paraDepth < 0 {
			return
		}
		if paraDepth > 0 {
			out.WriteString(strings.Repeat(">", paraDepth))
			out.WriteByte(' ')
		}
		out.WriteString(para.String())
		out.WriteByte('\n')
		para.Reset()
		paraDepth = -1
	}

	for _, line := range lines {
		depth := 0
		for depth < len(line) && line[depth] == '>' {
			depth++
		}
		content := line[depth:]
		if strings.HasPrefix(content, " ") {
			content = content[1:] // space-stuffing, or the space after ">"
		}
		if paraDepth >= 0 && depth != paraDepth {
			// A quote-depth change ends a paragraph even after a soft
			// break (section 4.5).
			flush()
		}
		soft := strings.HasSuffix(content, " ") && content != "-- "
		if soft && delSp {
			content = content[:len(content)-1]
		}
		para.WriteString(content)
		paraDepth = depth
		if !soft {
			flush()
		}
	}
	flush()
	s := out.String()
	if !trailing {
		s = strings.TrimSuffix(s, "\n")
	}
	return s
}
