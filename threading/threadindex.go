package threading

import (
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// ThreadIndexConversation returns the conversation that an Outlook or
// Exchange Thread-Index header names: the hex form of its 22-byte
// header block (a FILETIME and a GUID that the first message of a
// conversation gets, and every reply copies before appending its own
// 5-byte block). It returns "" for a value that is not a well-formed
// Thread-Index, so a mangled header threads nothing.
func ThreadIndexConversation(v string) string {
	v = strings.Join(strings.Fields(v), "")
	if v == "" || len(v) > 4096 {
		return ""
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return ""
	}
	if len(b) < 22 || (len(b)-22)%5 != 0 {
		return ""
	}
	zero := true
	for _, c := range b[6:22] {
		if c != 0 {
			zero = false
			break
		}
	}
	if zero {
		return "" // no GUID: every such header would name one conversation
	}
	return hex.EncodeToString(b[:22])
}
