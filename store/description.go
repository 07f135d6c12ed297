package store

import (
	"database/sql"
	"errors"
	"fmt"
)

// Description returns a ticket's first conversation — the mail or the
// API call that opened it — with its attachments, or nil when the
// ticket has none. It reads that one row, where Conversations reads
// them all: the API shows it as the ticket's description.
func (t *Tx) Description(ticketID int64) (*Conversation, error) {
	c, err := scanConversation(t.row(`SELECT `+convCols+` FROM conversations WHERE ticket_id=? ORDER BY id LIMIT 1`, ticketID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: ticket %d description: %w", ticketID, err)
	}
	if err := t.fillAttachments([]*Conversation{c}); err != nil {
		return nil, err
	}
	return c, nil
}
