package config

import (
	"encoding"
	"fmt"
	"net/netip"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The structural check walks the YAML tree beside the Config type,
// driven only by the yaml tags of its fields: a field added to any
// configuration struct is known here without being listed anywhere.
// It reports unknown keys (with the nearest known key), duplicate keys
// and values of the wrong shape or type, each at its own line, and
// removes what it reported from the tree so that the tree then decodes
// without error and the semantic checks (Validate) still run: one run
// reports every problem.
//
// Types with their own rules are checked by decoding the one node into
// a fresh value of the field's type (Duration, Secret, netip.Prefix,
// anything implementing yaml.Unmarshaler or encoding.TextUnmarshaler),
// so a type added later brings its own check with it.

var (
	unmarshalerType     = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	prefixType          = reflect.TypeFor[netip.Prefix]()
	addrType            = reflect.TypeFor[netip.Addr]()
)

// checker collects structural problems of one file.
type checker struct {
	file string
	ps   Problems
}

func (k *checker) add(n *yaml.Node, path, format string, args ...any) {
	k.ps = append(k.ps, Problem{File: k.file, Line: n.Line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// checkTree checks the document root against the Config type.
func checkTree(file string, root *yaml.Node) Problems {
	return checkTreeOf(file, root, reflect.TypeFor[Config]())
}

// checkTreeOf checks the document root against the struct type t.
func checkTreeOf(file string, root *yaml.Node, t reflect.Type) Problems {
	k := &checker{file: file}
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		n := root.Content[0]
		if n.Kind != yaml.MappingNode && !isNull(n) {
			k.ps = append(k.ps, Problem{File: file, Line: n.Line,
				Msg: "the configuration must be a mapping of keys (database:, smtp:, channels: …), not " + describe(n)})
			root.Content[0] = nullNode(n)
			return k.ps
		}
		k.node(n, t, "")
	}
	return k.ps
}

// node checks n against type t at path; a node of the wrong kind is
// reported and replaced with null.
func (k *checker) node(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode {
		if n.Alias != nil {
			k.node(n.Alias, t, path)
		}
		return
	}
	if isNull(n) {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	custom := reflect.PointerTo(t).Implements(unmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType)
	switch {
	case t == prefixType || t == addrType:
		k.leaf(n, t, path)
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode && hasYAMLFields(t):
		k.mapping(n, t, path)
		if custom {
			k.decodes(n, t, path)
		}
	case custom:
		k.decodes(n, t, path)
	case t.Kind() == reflect.Struct:
		k.add(n, path, "must be a mapping of keys (key: value on the lines below), not %s", describe(n))
		*n = *nullNode(n)
	case t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8:
		if n.Kind != yaml.SequenceNode {
			k.add(n, path, "must be a list (written [a, b] or as \"- item\" lines), not %s", describe(n))
			*n = *nullNode(n)
			return
		}
		for i, e := range n.Content {
			k.node(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			k.add(n, path, "must be a mapping of keys, not %s", describe(n))
			*n = *nullNode(n)
			return
		}
		k.dedupe(n, path)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k.node(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value))
		}
	case t.Kind() == reflect.Interface:
	default:
		k.leaf(n, t, path)
	}
}

// mapping checks the keys of a struct's mapping: unknown and duplicate
// keys are reported and removed, known ones checked against their
// field's type.
func (k *checker) mapping(n *yaml.Node, t reflect.Type, path string) {
	fields := yamlFields(t)
	k.dedupe(n, path)
	kept := n.Content[:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		if key.Value == "<<" { // a merge key: yaml.v3 merges it into the mapping
			kept = append(kept, key, val)
			continue
		}
		ft, ok := fields[key.Value]
		if !ok {
			msg := "unknown option"
			if near := nearest(key.Value, fields); near != "" {
				msg += "; did you mean " + join(path, near) + "?"
			} else {
				msg += " (deskmail.example.yaml lists every option)"
			}
			k.add(key, join(path, key.Value), "%s", msg)
			continue
		}
		k.node(val, ft, join(path, key.Value))
		kept = append(kept, key, val)
	}
	n.Content = kept
}

// dedupe reports and removes the later copies of a key written twice.
func (k *checker) dedupe(n *yaml.Node, path string) {
	seen := map[string]int{}
	kept := n.Content[:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		key := n.Content[i]
		if first, dup := seen[key.Value]; dup && key.Value != "<<" {
			k.add(key, join(path, key.Value), "written twice (first at line %d); keep one", first)
			continue
		}
		seen[key.Value] = key.Line
		kept = append(kept, key, n.Content[i+1])
	}
	n.Content = kept
}

// leaf checks a scalar value against a plain type.
func (k *checker) leaf(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.ScalarNode {
		k.add(n, path, "must be a single value, not %s", describe(n))
		*n = *nullNode(n)
		return
	}
	v := reflect.New(t)
	if err := n.Decode(v.Interface()); err == nil {
		return
	}
	switch {
	case t == prefixType:
		k.add(n, path, "%q is not an IP range in CIDR notation (write 192.0.2.0/24 or 2001:db8::/32)", n.Value)
	case t == addrType:
		k.add(n, path, "%q is not an IP address", n.Value)
	case t.Kind() == reflect.Bool:
		k.add(n, path, "%q must be true or false", n.Value)
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		k.add(n, path, "%q must be a whole number", n.Value)
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		k.add(n, path, "%q must be a number", n.Value)
	default:
		k.add(n, path, "%q is not a valid value", n.Value)
	}
	*n = *nullNode(n)
}

// decodes checks a node against a type with its own decoding rules by
// decoding it alone; the type's error is the message.
func (k *checker) decodes(n *yaml.Node, t reflect.Type, path string) {
	v := reflect.New(t)
	err := n.Decode(v.Interface())
	if err == nil {
		return
	}
	k.add(n, path, "%s", cleanYAMLError(err))
	*n = *nullNode(n)
}

// cleanYAMLError strips yaml.v3's prefixes ("yaml: unmarshal errors:",
// "line N:") from a decoding error.
func cleanYAMLError(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n")
	msg = strings.TrimSpace(msg)
	var line int
	if _, scanErr := fmt.Sscanf(msg, "line %d:", &line); scanErr == nil {
		msg = strings.TrimSpace(msg[strings.Index(msg, ":")+1:])
	}
	return msg
}

// yamlFields maps the yaml keys of a struct to their field types
// (fields tagged "-" and unexported fields are not keys).
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

// hasYAMLFields reports whether a struct is written as a mapping of its
// tagged fields (Duration, which embeds time.Duration, is not).
func hasYAMLFields(t reflect.Type) bool {
	for f := range t.Fields() {
		if f.IsExported() && f.Tag.Get("yaml") != "" && f.Tag.Get("yaml") != "-" {
			return true
		}
	}
	return false
}

// nearest returns the known key closest to a misspelt one, or "" when
// none is close enough to be a likely typo.
func nearest(key string, fields map[string]reflect.Type) string {
	best, bestD := "", 0
	lk := strings.ToLower(strings.ReplaceAll(key, "-", "_"))
	for name := range fields {
		d := editDistance(lk, name)
		if best == "" || d < bestD || (d == bestD && name < best) {
			best, bestD = name, d
		}
	}
	limit := max(1, min(3, len(best)/3))
	if best == "" || bestD > limit {
		return ""
	}
	return best
}

// editDistance is the optimal-string-alignment distance between a and
// b: insertions, deletions, substitutions and swaps of two neighbours
// ("prot" for "port") each count one.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping of keys"
	case yaml.SequenceNode:
		return "a list"
	default:
		return strconv.Quote(n.Value)
	}
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func nullNode(n *yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
}

// join appends a key to a YAML path ("smtp" + "listen" = "smtp.listen").
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// pathString formats a key path (map keys as strings, sequence indexes
// as ints) as written in problems: channels[1].imap.host.
func pathString(path ...any) string {
	var b strings.Builder
	for _, p := range path {
		switch k := p.(type) {
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(k)
		case int:
			fmt.Fprintf(&b, "[%d]", k)
		}
	}
	return b.String()
}

// checkSecrets resolves every Secret in the configuration, wherever it
// is (found by reflection, so a new secret field is checked too), and
// reports the ones that cannot be read: a missing file, an unset
// environment variable.
func (c *Config) checkSecrets(add func(at loc, format string, args ...any)) {
	var walk func(v reflect.Value, path []any)
	walk = func(v reflect.Value, path []any) {
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem(), path)
			}
		case reflect.Slice:
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i), append(append([]any(nil), path...), i))
			}
		case reflect.Struct:
			if s, ok := v.Interface().(Secret); ok {
				if s.IsZero() {
					return
				}
				if _, err := s.Value(); err != nil {
					add(c.at(path...), "%v", err)
				}
				return
			}
			t := v.Type()
			for i := 0; i < t.NumField(); i++ {
				f := t.Field(i)
				name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				if !f.IsExported() || name == "" || name == "-" {
					continue
				}
				walk(v.Field(i), append(append([]any(nil), path...), name))
			}
		}
	}
	walk(reflect.ValueOf(c).Elem(), nil)
}
