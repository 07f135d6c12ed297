package api_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/deskmail/deskmail/api"
)

// schemaChecker validates requests and responses against openapi.yaml
// with kin-openapi (a validator written by no one here): every
// exchange the harness makes goes through check.
type schemaChecker struct {
	doc    *openapi3.T
	router routers.Router
	mu     sync.Mutex
	// seen counts the exchanges per documented operation ("GET
	// /api/v2/tickets/{id}").
	seen map[string]int
}

func loadSpec(t testing.TB) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPI)
	if err != nil {
		t.Fatalf("openapi.yaml does not load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	return doc
}

func newSchemaChecker(t testing.TB) *schemaChecker {
	t.Helper()
	doc := loadSpec(t)
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatalf("openapi.yaml: router: %v", err)
	}
	return &schemaChecker{doc: doc, router: router, seen: map[string]int{}}
}

// check validates one exchange: the request against its operation's
// parameters and body, the response's status (it must be documented),
// headers and body against its schema. reqBody is what was sent.
func (c *schemaChecker) check(t testing.TB, req *http.Request, reqBody []byte, r resp) {
	t.Helper()
	u := *req.URL
	rq := req.Clone(req.Context())
	rq.URL = &url.URL{Path: u.Path, RawQuery: u.RawQuery}
	route, params, err := c.router.FindRoute(rq)
	if err != nil {
		if r.code == http.StatusNotFound || r.code == http.StatusMethodNotAllowed {
			return // an undocumented path or method, refused as it should be
		}
		t.Fatalf("%s %s: answered %d but openapi.yaml has no such operation: %v", req.Method, u.Path, r.code, err)
	}
	c.mu.Lock()
	c.seen[route.Method+" "+route.Path]++
	c.mu.Unlock()
	rq.Body = io.NopCloser(bytes.NewReader(reqBody))
	in := &openapi3filter.RequestValidationInput{Request: rq, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}}
	ctx := context.Background()
	// Requests are validated only when the server accepted them: a
	// test that sends a bad request on purpose expects a 4xx.
	if r.code < 400 {
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			t.Fatalf("%s %s: the request the server accepted (%d) does not match openapi.yaml: %v", req.Method, u.String(), r.code, err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: r.code, Header: r.hdr,
		Body: io.NopCloser(bytes.NewReader(r.body)), Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		t.Fatalf("%s %s: the answer %d does not match openapi.yaml: %v\n%s", req.Method, u.String(), r.code, err, truncate(r.body))
	}
}

func truncate(b []byte) string {
	if len(b) > 2000 {
		return string(b[:2000]) + "…"
	}
	return string(b)
}

// TestOpenAPIValid loads openapi.yaml with kin-openapi and validates
// it as an OpenAPI 3 document, and checks that its description and the
// package documentation (doc.go) both name each known difference from
// Freshdesk.
func TestOpenAPIValid(t *testing.T) {
	doc := loadSpec(t)
	pkgDoc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	flat := func(s string) string {
		s = strings.ToLower(strings.ReplaceAll(s, "// ", ""))
		return strings.Join(strings.Fields(s), " ")
	}
	spec, pkg := flat(doc.Info.Description), flat(string(pkgDoc))
	for _, must := range []string{
		"per key", "per client address", "bearer", "503", "trash", "source 10", "outbound_email", "bcc_emails",
		"company_id and product_id are always null", "spam is always false", "group_id", "include=conversations",
		"notify_emails", "notified_to", "iana", "409", "duplicate_value", "soft", "hard delete", "make_agent",
		"activities", "companies", "agents other than /agents/me", "groups", "canned responses", "solutions",
		"time entries", "automations", "watchers", "merging", "bulk update", "archived tickets", "jobs",
	} {
		if !strings.Contains(spec, must) {
			t.Errorf("the OpenAPI description does not mention %q", must)
		}
		if !strings.Contains(pkg, must) {
			t.Errorf("the api package documentation does not mention %q", must)
		}
	}
}

// TestOpenAPIEveryEndpoint calls every operation openapi.yaml documents
// on the running API (real pipeline, store and HTTP listener), each
// answer validated by the harness against the schema — status,
// headers and body — and fails for an operation no call reached, so a
// route added without a call here is noticed.
func TestOpenAPIEveryEndpoint(t *testing.T) {
	forEachStore(t, openAPIEveryEndpointOn)
}

func openAPIEveryEndpointOn(t *testing.T, db string) {
	h := newHarness(t, hopts{rateLimit: 1000, dbPath: db})
	id := h.mail("jane@customers.test", "support@acme.test", "Printer", "oe1@customers.test", "it jams")
	tk := fmt.Sprintf("/api/v2/tickets/%d", id)
	calls := []struct {
		agent, method, path string
		body                any
		code                int
	}{
		{alice, "GET", "/api/v2/tickets?per_page=1&include=requester,stats", nil, 200},
		{alice, "POST", "/api/v2/tickets", map[string]any{"email": "ann@customers.test", "subject": "New", "description": "<p>hi</p>", "tags": []string{"x"}}, 201},
		{alice, "GET", tk + "?include=conversations,requester,stats", nil, 200},
		{alice, "PUT", tk, map[string]any{"priority": 3, "tags": []string{"printer"}}, 200},
		{alice, "POST", tk + "/reply", map[string]any{"body": "<p>Try again</p>", "cc_emails": []string{"boss@customers.test"}}, 201},
		{alice, "POST", tk + "/notes", map[string]any{"body": "internal", "notify_emails": []string{root}}, 201},
		{alice, "GET", tk + "/conversations", nil, 200},
		{alice, "GET", tk + "/activities?per_page=2", nil, 200},
		{alice, "GET", "/api/v2/contacts?per_page=1", nil, 200},
		{alice, "POST", "/api/v2/contacts", map[string]any{"name": "Zoe", "email": "zoe@customers.test", "time_zone": "Asia/Tokyo"}, 201},
		{alice, "POST", "/api/v2/contacts", map[string]any{"name": "Zoe", "email": "zoe@customers.test"}, 409},
		{alice, "GET", "/api/v2/search/tickets?query=" + url.QueryEscape(`"priority:3 AND (status:2 OR tag:'printer')"`), nil, 200},
		{alice, "GET", "/api/v2/search/tickets?query=" + url.QueryEscape(`"priority:"`), nil, 400},
		{alice, "GET", "/api/v2/search/contacts?query=" + url.QueryEscape(`"email:'jane@customers.test'"`), nil, 200},
		{alice, "GET", "/api/v2/tickets?filter=new_and_my_open&order_by=due_by&order_type=asc&updated_since=2000-01-01", nil, 200},
		{alice, "GET", "/api/v2/ticket_fields", nil, 200},
		{alice, "GET", "/api/v2/agents/me", nil, 200},
		{alice, "GET", "/api/v2/openapi.yaml", nil, 200},
		{alice, "PUT", tk, map[string]any{"priority": 9}, 400},
		{"", "GET", "/api/v2/tickets", nil, 401},
		{alice, "DELETE", tk, nil, 403},
		{alice, "GET", "/api/v2/tickets/99999", nil, 404},
	}
	for _, c := range calls {
		r := h.do(c.agent, c.method, c.path, c.body)
		want(t, r, c.code)
		if c.agent != "" && r.hdr.Get("X-RateLimit-Total") == "" {
			t.Errorf("%s %s: no X-RateLimit-Total", c.method, c.path)
		}
	}
	contact := h.do(alice, "GET", "/api/v2/contacts?email=zoe%40customers.test", nil).list(t)[0]
	cpath := fmt.Sprintf("/api/v2/contacts/%d", int64(contact["id"].(float64)))
	want(t, h.do(alice, "GET", cpath, nil), 200)
	want(t, h.do(root, "PUT", cpath, map[string]any{"phone": "+81 3 0000 0000", "tags": []string{"jp"}}), 200)
	want(t, h.do(root, "DELETE", cpath, nil), 204)
	want(t, h.do(root, "PUT", cpath+"/restore", nil), 204)

	// A note with an attachment (multipart), its download, its edit, and
	// a conversation's delete.
	body, ct := multipartBody(t, [][2]string{{"body", "see file"}, {"private", "true"}}, map[string][]byte{"log.txt": []byte("paper jam at tray 2")})
	req, _ := http.NewRequest("POST", h.url+tk+"/notes", body)
	req.Header.Set("Content-Type", ct)
	req.SetBasicAuth(h.keys[alice], "X")
	r := h.send(req)
	want(t, r, 201)
	note := r.obj(t)
	att := note["attachments"].([]any)[0].(map[string]any)
	dl, _ := http.NewRequest("GET", att["attachment_url"].(string), nil)
	dl.SetBasicAuth(h.keys[alice], "X")
	if r := h.send(dl); r.code != 200 || string(r.body) != "paper jam at tray 2" {
		t.Fatalf("attachment: %d %q", r.code, r.body)
	}
	conv := fmt.Sprintf("/api/v2/conversations/%d", int64(note["id"].(float64)))
	want(t, h.do(alice, "PUT", conv, map[string]any{"body": "see the file"}), 200)
	want(t, h.do(root, "DELETE", conv, nil), 204)
	want(t, h.do(root, "DELETE", tk, nil), 204)
	want(t, h.do(root, "PUT", tk+"/restore", nil), 204)

	for path, item := range h.spec.doc.Paths.Map() {
		for method := range item.Operations() {
			if h.spec.seen[method+" "+path] == 0 {
				t.Errorf("%s %s is documented but no call here reached it: add one", method, path)
			}
		}
	}
}
