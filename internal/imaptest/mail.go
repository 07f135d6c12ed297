package imaptest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Mail builds a plain text message dated at; cc may be empty, refs
// (oldest first) become References, the last one In-Reply-To.
func Mail(id, from, to, cc, subject string, at time.Time, refs ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\n", from, to)
	if cc != "" {
		fmt.Fprintf(&b, "Cc: %s\r\n", cc)
	}
	fmt.Fprintf(&b, "Subject: %s\r\nMessage-ID: <%s>\r\nDate: %s\r\n", subject, id, at.Format(time.RFC1123Z))
	if len(refs) > 0 {
		fmt.Fprintf(&b, "In-Reply-To: <%s>\r\nReferences: <%s>\r\n", refs[len(refs)-1], strings.Join(refs, "> <"))
	}
	fmt.Fprintf(&b, "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nMessage %s.\r\n", id)
	return []byte(b.String())
}

// Append appends raw to folder with INTERNALDATE at.
func Append(t testing.TB, c *imapclient.Client, folder string, raw []byte, at time.Time) {
	t.Helper()
	cmd := c.Append(folder, int64(len(raw)), &imap.AppendOptions{Time: at})
	if _, err := cmd.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.Wait(); err != nil {
		t.Fatalf("append to %s: %v", folder, err)
	}
}
