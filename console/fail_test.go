package console

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/deskmail/deskmail/store"
)

// TestFailConflictAsksToSendAgain: a change PostgreSQL aborted for a
// conflict with another instance (store.ErrConflict, wrapped as the
// store returns it) gets 503 with Retry-After and a page that says
// nothing was saved, not "internal error".
func TestFailConflictAsksToSendAgain(t *testing.T) {
	c := &Console{log: slog.New(slog.DiscardHandler)}
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/tickets/1/reply", nil)
	c.fail(w, r, nil, fmt.Errorf("store: update ticket 1: %w", fmt.Errorf("%w: deadlock detected", store.ErrConflict)))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "not saved") {
		t.Errorf("status %d, Retry-After %q, body %q; want 503, a Retry-After and a page saying it was not saved", w.Code, w.Header().Get("Retry-After"), w.Body.String())
	}
}
