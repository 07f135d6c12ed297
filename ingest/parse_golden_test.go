package ingest

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden .json files of fixtures/parse")

// fixtureDir holds the parse fixtures: X.eml with the expected
// `deskmail parse` output X.json beside it, and broken mail under
// low-quality/.
const fixtureDir = "../fixtures/parse"

func fixtureFiles(t testing.TB) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(fixtureDir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".eml") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk fixtures: %v", err)
	}
	if len(files) == 0 {
		t.Fatal("no fixtures found")
	}
	return files
}

// goldenNow is the arrival time used for every fixture.
var goldenNow = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

func TestParseGolden(t *testing.T) {
	for _, path := range fixtureFiles(t) {
		name := strings.TrimPrefix(path, fixtureDir+"/")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			m, err := Parse(raw, ParseOptions{Now: goldenNow})
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			var got bytes.Buffer
			if err := WriteJSON(&got, m); err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(path, ".eml") + ".json"
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden (run go test ./ingest -run Golden -update): %v", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("parse output differs from %s\n--- got\n%s", golden, got.String())
			}
		})
	}
}
