package store

import (
	"fmt"
	"time"
)

// MessagesSince counts raw messages received at or after since, by
// channel name ("" for messages no channel claimed).
func (t *Tx) MessagesSince(since time.Time) (map[string]int, error) {
	rows, err := t.query(`SELECT COALESCE(c.name,''), COUNT(*) FROM raw_messages r LEFT JOIN channels c ON c.id=r.channel_id
		WHERE r.received_at>=? GROUP BY 1`, ts(since))
	if err != nil {
		return nil, fmt.Errorf("store: messages since: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var name string
		var n int
		if err := rows.Scan(&name, &n); err != nil {
			return nil, fmt.Errorf("store: messages since: %w", err)
		}
		out[name] = n
	}
	return out, rows.Err()
}
