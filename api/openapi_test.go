package api

import (
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestOpenAPIInSync checks that openapi.yaml documents exactly the
// routes the handler serves.
func TestOpenAPIInSync(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	var documented, served []string
	for path, ops := range doc.Paths {
		for op := range ops {
			if op == "parameters" {
				continue
			}
			documented = append(documented, strings.ToUpper(op)+" "+path)
		}
	}
	for _, r := range routes() {
		served = append(served, r.method+" "+r.path)
	}
	slices.Sort(documented)
	slices.Sort(served)
	if !slices.Equal(documented, served) {
		t.Fatalf("openapi.yaml and routes differ:\ndocumented %v\nserved     %v", documented, served)
	}
}
