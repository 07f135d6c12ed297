package threading

import (
	"encoding/base64"
	"testing"
)

func TestThreadIndexConversation(t *testing.T) {
	head := make([]byte, 22)
	for i := range head {
		head[i] = byte(i + 1)
	}
	first := base64.StdEncoding.EncodeToString(head)
	reply := base64.StdEncoding.EncodeToString(append(append([]byte{}, head...), 1, 2, 3, 4, 5))
	if a, b := ThreadIndexConversation(first), ThreadIndexConversation(reply); a == "" || a != b {
		t.Fatalf("first %q reply %q: want the same conversation", a, b)
	}
	if ThreadIndexConversation(" "+reply[:10]+"\r\n "+reply[10:]) != ThreadIndexConversation(first) {
		t.Error("a folded header names another conversation")
	}
	for _, bad := range []string{"", "not base64!", base64.StdEncoding.EncodeToString(head[:21]),
		base64.StdEncoding.EncodeToString(append(append([]byte{}, head...), 1, 2)),
		base64.StdEncoding.EncodeToString(make([]byte, 22))} {
		if got := ThreadIndexConversation(bad); got != "" {
			t.Errorf("ThreadIndexConversation(%q) = %q, want none", bad, got)
		}
	}
}
