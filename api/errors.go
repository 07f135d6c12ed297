package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// FieldError is one entry of a validation error body.
type FieldError struct {
	Field string `json:"field"`
	// AdditionalInfo is Freshdesk's extra detail (user_id of the
	// existing contact for a duplicate_value).
	AdditionalInfo map[string]any `json:"additional_info,omitempty"`
	Message        string         `json:"message"`
	Code           string         `json:"code"`
}

// validationBody is Freshdesk's 400 body.
type validationBody struct {
	Description string       `json:"description"`
	Errors      []FieldError `json:"errors"`
}

// codeBody is Freshdesk's body for errors that are not about fields.
type codeBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Freshdesk's field error codes.
const (
	codeMissingField     = "missing_field"
	codeInvalidValue     = "invalid_value"
	codeInvalidField     = "invalid_field"
	codeDatatypeMismatch = "datatype_mismatch"
	codeDuplicateValue   = "duplicate_value"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"code":"internal_error","message":"The response could not be encoded."}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeCode(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, codeBody{Code: code, Message: msg})
}

func writeValidation(w http.ResponseWriter, errs []FieldError) {
	writeJSON(w, http.StatusBadRequest, validationBody{Description: "Validation failed", Errors: errs})
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Basic realm="deskmail"`)
	writeCode(w, http.StatusUnauthorized, "invalid_credentials", "You have to be logged in to perform this action.")
}

func forbidden(w http.ResponseWriter) {
	writeCode(w, http.StatusForbidden, "access_denied", "You are not authorized to perform this action.")
}

func notFound(w http.ResponseWriter) {
	writeCode(w, http.StatusNotFound, "not_found", "The requested resource does not exist.")
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allowed []string) {
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	writeCode(w, http.StatusMethodNotAllowed, "method_not_allowed",
		r.Method+" method is not allowed. It should be one of these method(s): "+strings.Join(allowed, ", "))
}

func internalError(w http.ResponseWriter) {
	writeCode(w, http.StatusInternalServerError, "internal_error", "We're sorry, but something went wrong.")
}

// fieldErrors collects validation problems while a request is read.
type fieldErrors []FieldError

func (fe *fieldErrors) add(field, code, msg string) {
	*fe = append(*fe, FieldError{Field: field, Message: msg, Code: code})
}
