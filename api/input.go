package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/deskmail/deskmail/store"
)

// input is a request body, JSON or multipart/form-data, read into one
// shape so that handlers validate fields the same way for both.
type input struct {
	json      map[string]json.RawMessage
	form      map[string][]string
	files     []*multipart.FileHeader
	multipart bool
}

// readInput reads the body of r. It answers the request itself (415,
// 400 invalid_json, 413) and returns nil when the body is unusable.
// Multipart bodies are accepted only when allowMultipart.
func (s *server) readInput(w http.ResponseWriter, r *http.Request, allowMultipart bool) *input {
	ct, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		ct = ""
	}
	switch {
	case ct == "application/json":
		r.Body = http.MaxBytesReader(w, r.Body, s.maxJSON)
		data, err := io.ReadAll(r.Body)
		if err != nil {
			s.bodyError(w, err)
			return nil
		}
		in := &input{}
		if len(bytes.TrimSpace(data)) == 0 {
			in.json = map[string]json.RawMessage{}
			return in
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err := dec.Decode(&in.json); err != nil || in.json == nil || dec.More() {
			writeCode(w, http.StatusBadRequest, "invalid_json", "Request body has invalid json format")
			return nil
		}
		return in
	case ct == "multipart/form-data" && allowMultipart && params["boundary"] != "":
		r.Body = http.MaxBytesReader(w, r.Body, s.maxMultipart)
		if err := r.ParseMultipartForm(8 << 20); err != nil {
			s.bodyError(w, err)
			return nil
		}
		in := &input{form: map[string][]string{}, multipart: true}
		for k, v := range r.MultipartForm.Value {
			k = strings.TrimSuffix(k, "[]")
			in.form[k] = append(in.form[k], v...)
		}
		for k, fs := range r.MultipartForm.File {
			if strings.TrimSuffix(k, "[]") != "attachments" {
				in.form[strings.TrimSuffix(k, "[]")] = append(in.form[strings.TrimSuffix(k, "[]")], "")
				continue
			}
			in.files = append(in.files, fs...)
		}
		return in
	default:
		want := "application/json"
		if allowMultipart {
			want += " or multipart/form-data"
		}
		writeCode(w, http.StatusUnsupportedMediaType, "invalid_content_type", "Content-Type header should have "+want)
		return nil
	}
}

func (s *server) bodyError(w http.ResponseWriter, err error) {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeCode(w, http.StatusRequestEntityTooLarge, "invalid_size", fmt.Sprintf("The request body is larger than %d bytes.", tooBig.Limit))
		return
	}
	writeCode(w, http.StatusBadRequest, "invalid_multipart", "The request body could not be read: "+err.Error())
}

// keys lists the fields present.
func (in *input) keys() []string {
	var out []string
	for k := range in.json {
		out = append(out, k)
	}
	for k := range in.form {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// checkUnknown reports every field not in allowed.
func (in *input) checkUnknown(fe *fieldErrors, allowed ...string) {
	ok := map[string]bool{}
	for _, a := range allowed {
		ok[a] = true
	}
	for _, k := range in.keys() {
		if !ok[k] {
			fe.add(k, codeInvalidField, "Unexpected/invalid field in request")
		}
	}
}

func (in *input) has(name string) bool {
	if _, ok := in.json[name]; ok {
		return true
	}
	_, ok := in.form[name]
	return ok
}

func (in *input) isNull(name string) bool {
	raw, ok := in.json[name]
	return ok && string(bytes.TrimSpace(raw)) == "null"
}

// str reads a string field; nil when absent, "" when null.
func (in *input) str(name string, fe *fieldErrors) *string {
	if in.multipart {
		v, ok := in.form[name]
		if !ok || len(v) == 0 {
			return nil
		}
		return &v[0]
	}
	raw, ok := in.json[name]
	if !ok {
		return nil
	}
	if in.isNull(name) {
		empty := ""
		return &empty
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		fe.add(name, codeDatatypeMismatch, "Value set is of type "+jsonType(raw)+".It should be a/an String")
		return nil
	}
	return &s
}

// integer reads an integer field; nil when absent, 0 when null.
func (in *input) integer(name string, fe *fieldErrors) *int64 {
	var text string
	if in.multipart {
		v, ok := in.form[name]
		if !ok || len(v) == 0 {
			return nil
		}
		text = strings.TrimSpace(v[0])
	} else {
		raw, ok := in.json[name]
		if !ok {
			return nil
		}
		if in.isNull(name) {
			var zero int64
			return &zero
		}
		if t := jsonType(raw); t != "Number" {
			fe.add(name, codeDatatypeMismatch, "Value set is of type "+t+".It should be a/an Integer")
			return nil
		}
		text = string(bytes.TrimSpace(raw))
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		fe.add(name, codeDatatypeMismatch, "It should be a/an Integer")
		return nil
	}
	return &n
}

// boolean reads a boolean field; nil when absent.
func (in *input) boolean(name string, fe *fieldErrors) *bool {
	var text string
	if in.multipart {
		v, ok := in.form[name]
		if !ok || len(v) == 0 {
			return nil
		}
		text = strings.ToLower(strings.TrimSpace(v[0]))
	} else {
		raw, ok := in.json[name]
		if !ok || in.isNull(name) {
			return nil
		}
		text = string(bytes.TrimSpace(raw))
	}
	switch text {
	case "true":
		b := true
		return &b
	case "false":
		b := false
		return &b
	}
	fe.add(name, codeDatatypeMismatch, "It should be a/an Boolean")
	return nil
}

// strs reads an array of strings; nil when absent, empty when null.
func (in *input) strs(name string, fe *fieldErrors) []string {
	if in.multipart {
		v, ok := in.form[name]
		if !ok {
			return nil
		}
		out := []string{}
		for _, s := range v {
			if s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	raw, ok := in.json[name]
	if !ok {
		return nil
	}
	if in.isNull(name) {
		return []string{}
	}
	var out []string
	if err := json.Unmarshal(raw, &out); err != nil {
		fe.add(name, codeDatatypeMismatch, "Value set is of type "+jsonType(raw)+".It should be a/an Array")
		return nil
	}
	if out == nil {
		out = []string{}
	}
	return out
}

// emptyOnly accepts a Freshdesk field deskmail does not support only
// when it is absent or empty ({}, [], null, "").
func (in *input) emptyOnly(fe *fieldErrors, names ...string) {
	for _, name := range names {
		if in.multipart {
			for _, v := range in.form[name] {
				if v != "" {
					fe.add(name, codeInvalidValue, "deskmail does not support this field; leave it empty")
					break
				}
			}
			continue
		}
		raw, ok := in.json[name]
		if !ok {
			continue
		}
		switch strings.Join(strings.Fields(string(raw)), "") {
		case "null", "{}", "[]", `""`:
		default:
			fe.add(name, codeInvalidValue, "deskmail does not support this field; leave it empty")
		}
	}
}

// attachments reads the uploaded files (multipart attachments[]).
func (in *input) attachments(fe *fieldErrors) []store.Attachment {
	var out []store.Attachment
	for _, fh := range in.files {
		f, err := fh.Open()
		if err != nil {
			fe.add("attachments", codeInvalidValue, "cannot read "+fh.Filename)
			continue
		}
		data, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			fe.add("attachments", codeInvalidValue, "cannot read "+fh.Filename)
			continue
		}
		ct := fh.Header.Get("Content-Type")
		if mt, _, err := mime.ParseMediaType(ct); err == nil {
			ct = mt
		} else {
			ct = "application/octet-stream"
		}
		out = append(out, store.Attachment{Filename: fh.Filename, ContentType: ct, Content: data})
	}
	return out
}

func jsonType(raw json.RawMessage) string {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return "Null"
	}
	switch t[0] {
	case '"':
		return "String"
	case '{':
		return "key/value pair"
	case '[':
		return "Array"
	case 't', 'f':
		return "Boolean"
	case 'n':
		return "Null"
	}
	return "Number"
}

// customFields reads custom_fields: an object of field name to a
// string, number, boolean or null (null or "" clears the field). The
// names and values are checked against the configuration by the
// threading engine's Validate.
func (in *input) customFields(fe *fieldErrors) map[string]string {
	if in.multipart {
		in.emptyOnly(fe, "custom_fields")
		return nil
	}
	raw, ok := in.json["custom_fields"]
	if !ok || string(raw) == "null" {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		fe.add("custom_fields", codeDatatypeMismatch, "It should be an object of field name to value")
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		switch x := v.(type) {
		case nil:
			out[k] = ""
		case string:
			out[k] = x
		case float64:
			out[k] = strconv.FormatFloat(x, 'f', -1, 64)
		case bool:
			out[k] = strconv.FormatBool(x)
		default:
			fe.add("custom_fields", codeDatatypeMismatch, "The value of "+k+" should be a string, number or null")
		}
	}
	return out
}
