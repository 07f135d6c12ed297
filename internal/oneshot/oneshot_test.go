package oneshot

import "testing"

func TestIngest(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"deskmail", "ingest", "--config", "f", "-"}, true},
		{[]string{"/usr/bin/deskmail", "ingest"}, true},
		{[]string{"deskmail", "import", "a.mbox"}, false},
		{[]string{"deskmail", "serve"}, false},
		{[]string{"deskmail"}, false},
		{[]string{"deskmail.test", "-test.run=X"}, false},
	} {
		if got := Ingest(c.args); got != c.want {
			t.Errorf("Ingest(%q) = %v, want %v", c.args, got, c.want)
		}
	}
}
