// Package archive reads existing mail archives for an import: mbox
// files (mboxrd and mboxo, as mail clients and `mail` write them),
// Maildirs (cur and new, with Maildir++ subfolders) and directories of
// .eml files, in any mix. Scan indexes every message without holding
// its bytes (an mbox message is an offset and a length) and orders them
// by their Date header, so that an import threads replies after what
// they answer, as live mail would arrive; Read fetches one message.
package archive

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/mail"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Message is one message of an archive.
type Message struct {
	// Name says where it is: a file path, or "PATH#N" for the Nth
	// message of an mbox file.
	Name string
	// Date is its Date header, or for a message without a usable one
	// the date of the message before it in the same source.
	Date time.Time
	path string
	off  int64 // mbox: offset of the message (after its From_ line)
	size int64 // mbox: length; -1 for a whole file
}

// maxHeader bounds how much of a message Scan reads for its Date.
const maxHeader = 64 << 10

// Scan indexes the messages under paths (files or directories) and
// returns them sorted by date (stable: messages without a date keep
// their place in their source). Unreadable paths are returned as
// errors beside the messages that could be indexed.
func Scan(paths []string) ([]Message, []error) {
	var out []Message
	var errs []error
	for _, p := range paths {
		msgs, err := scanPath(p)
		out = append(out, msgs...)
		errs = append(errs, err...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Date.Before(out[j].Date) })
	return out, errs
}

func scanPath(p string) ([]Message, []error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, []error{fmt.Errorf("archive: %w", err)}
	}
	if !st.IsDir() {
		msgs, err := scanFile(p)
		if err != nil {
			return nil, []error{err}
		}
		return msgs, nil
	}
	var out []Message
	var errs []error
	err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			errs = append(errs, fmt.Errorf("archive: %w", err))
			return nil
		}
		name := d.Name()
		if d.IsDir() {
			if name == "tmp" && isMaildir(filepath.Dir(path)) {
				return filepath.SkipDir // Maildir's messages being written
			}
			return nil
		}
		if strings.HasPrefix(name, ".") || !d.Type().IsRegular() || isMaildirMeta(name) {
			return nil
		}
		msgs, err := scanFile(path)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		out = append(out, msgs...)
		return nil
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("archive: %s: %w", p, err))
	}
	return out, errs
}

// isMaildir reports whether dir has Maildir's cur and new folders.
func isMaildir(dir string) bool {
	for _, sub := range []string{"cur", "new"} {
		if st, err := os.Stat(filepath.Join(dir, sub)); err != nil || !st.IsDir() {
			return false
		}
	}
	return true
}

// isMaildirMeta reports the bookkeeping files Dovecot and Courier keep
// in a Maildir.
func isMaildirMeta(name string) bool {
	return strings.HasPrefix(name, "dovecot") || strings.HasPrefix(name, "courier") ||
		name == "maildirfolder" || name == "subscriptions"
}

// scanFile indexes one file: an mbox (its first line is a From_ line)
// or a single message.
func scanFile(path string) ([]Message, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	defer f.Close()
	head := make([]byte, 5)
	n, _ := io.ReadFull(f, head)
	if n == 5 && string(head) == "From " {
		return scanMbox(path, f)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("archive: %s: %w", path, err)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxHeader))
	if err != nil {
		return nil, fmt.Errorf("archive: %s: %w", path, err)
	}
	m := Message{Name: path, path: path, size: -1, Date: headerDate(b)}
	if m.Date.IsZero() {
		if st, err := f.Stat(); err == nil {
			m.Date = st.ModTime().UTC() // Maildir delivery time
		}
	}
	return []Message{m}, nil
}

// scanMbox indexes the messages of an mbox file: each starts after a
// line that begins with "From " at the start of the file or after a
// line end (mboxrd and mboxo both quote a "From " inside a message as
// ">From ").
func scanMbox(path string, f *os.File) ([]Message, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("archive: %s: %w", path, err)
	}
	r := bufio.NewReaderSize(f, 256<<10)
	var out []Message
	var off int64
	var cur *Message
	var header []byte
	inHeader := false
	var last time.Time
	finish := func(end int64) {
		if cur == nil {
			return
		}
		cur.size = end - cur.off
		if d := headerDate(header); !d.IsZero() {
			cur.Date = d
		} else {
			cur.Date = last
		}
		last = cur.Date
		out = append(out, *cur)
	}
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A very long line: keep reading it, it cannot be a From_ line.
			off += int64(len(line))
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = r.ReadSlice('\n')
				off += int64(len(line))
			}
			if err != nil && err != io.EOF {
				return nil, fmt.Errorf("archive: %s: %w", path, err)
			}
			inHeader = false
			if err == io.EOF {
				break
			}
			continue
		}
		if len(line) == 0 && err == io.EOF {
			break
		}
		if bytes.HasPrefix(line, []byte("From ")) {
			finish(off)
			cur = &Message{Name: fmt.Sprintf("%s#%d", path, len(out)+1), path: path, off: off + int64(len(line))}
			header, inHeader = header[:0], true
		} else if inHeader {
			if len(bytes.TrimRight(line, "\r\n")) == 0 || len(header) > maxHeader {
				inHeader = false
			} else {
				header = append(header, line...)
			}
		}
		off += int64(len(line))
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("archive: %s: %w", path, err)
		}
	}
	finish(off)
	return out, nil
}

// headerDate returns the Date header of the message that b starts
// with, or the zero time.
func headerDate(b []byte) time.Time {
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		b = b[:i+1]
	} else if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		b = b[:i+2]
	}
	m, err := mail.ReadMessage(bytes.NewReader(append(append([]byte{}, b...), '\n')))
	if err != nil {
		return time.Time{}
	}
	d, err := mail.ParseDate(m.Header.Get("Date"))
	if err != nil {
		return time.Time{}
	}
	return d.UTC()
}

// Read returns the message's bytes, at most max (0: no limit); an mbox
// message has its From_ quoting undone (">From " becomes "From ", and
// ">>From " becomes ">From ", the mboxrd rule).
func (m Message) Read(max int64) ([]byte, error) {
	f, err := os.Open(m.path)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	defer f.Close()
	size := m.size
	if size < 0 {
		st, err := f.Stat()
		if err != nil {
			return nil, fmt.Errorf("archive: %s: %w", m.Name, err)
		}
		size = st.Size()
	}
	if max > 0 && size > max {
		return nil, fmt.Errorf("archive: %s: %d bytes, more than the %d a message may have", m.Name, size, max)
	}
	b := make([]byte, size)
	if _, err := f.ReadAt(b, m.off); err != nil && !(errors.Is(err, io.EOF) && m.size < 0) {
		return nil, fmt.Errorf("archive: %s: %w", m.Name, err)
	}
	if m.size >= 0 {
		b = unquoteFrom(b)
	}
	return b, nil
}

// unquoteFrom undoes mbox From_ quoting line by line.
func unquoteFrom(b []byte) []byte {
	if !bytes.Contains(b, []byte(">From ")) {
		return b
	}
	var out bytes.Buffer
	out.Grow(len(b))
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line = b[:i+1]
		}
		b = b[len(line):]
		if t := bytes.TrimLeft(line, ">"); len(t) < len(line) && bytes.HasPrefix(t, []byte("From ")) {
			line = line[1:]
		}
		out.Write(line)
	}
	return out.Bytes()
}
