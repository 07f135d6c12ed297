package api

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/deskmail/deskmail/store"
)

// TestFailConflictAsksToRetry: a change that PostgreSQL aborted for a
// conflict with another instance's transaction (store.ErrConflict,
// wrapped as the store returns it) is answered 503 with Retry-After: 1
// and a code a client can act on, not 500.
func TestFailConflictAsksToRetry(t *testing.T) {
	s := &server{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPut, "/api/v2/tickets/1", nil)
	s.fail(w, r, fmt.Errorf("store: update ticket 1: %w", fmt.Errorf("%w: deadlock detected", store.ErrConflict)))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("status %d, Retry-After %q; want 503 and 1", w.Code, w.Header().Get("Retry-After"))
	}
	var body map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", w.Body.String(), err)
	}
	if got := fmt.Sprint(body["code"]); got != "conflict_retry" {
		t.Errorf("code %q in %s, want conflict_retry", got, w.Body.String())
	}
}
