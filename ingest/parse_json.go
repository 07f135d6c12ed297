package ingest

import (
	"encoding/json"
	"fmt"
	"io"
)

// WriteJSON writes m as the `deskmail parse` JSON object: indented by
// two spaces, "<", ">" and "&" not escaped, one trailing newline.
func WriteJSON(w io.Writer, m *Message) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return fmt.Errorf("encode message JSON: %w", err)
	}
	return nil
}
