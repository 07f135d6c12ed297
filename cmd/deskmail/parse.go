package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/deskmail/deskmail/ingest"
)

// runParse implements `deskmail parse FILE|-`: it prints the parsed
// message as one JSON object (the contract in ingest.Message).
func runParse(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("parse", "FILE|-",
		"Prints one parsed message (FILE, or - for stdin) as a JSON object; nothing is stored.")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: want exactly one FILE or -", errUsage)
	}
	raw, now, err := readMessage(pos[0], stdin)
	if err != nil {
		return err
	}
	msg, err := ingest.Parse(raw, ingest.ParseOptions{Now: now})
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	var buf bytes.Buffer
	if err := ingest.WriteJSON(&buf, msg); err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	if _, err := stdout.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// maxInputBytes bounds one message read from a file or stdin. The SMTP
// receiver and MTAs enforce their own, smaller limits; this one keeps a
// stray huge file from exhausting memory.
const maxInputBytes = 256 << 20

// readMessage reads a file (or stdin for "-") and returns its bytes and
// the arrival time to assume: the file's modification time, or now.
func readMessage(name string, stdin io.Reader) ([]byte, time.Time, error) {
	if name == "-" {
		raw, err := io.ReadAll(io.LimitReader(stdin, maxInputBytes+1))
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("read stdin: %w", err)
		}
		if len(raw) > maxInputBytes {
			return nil, time.Time{}, fmt.Errorf("stdin: message larger than %d MiB", maxInputBytes>>20)
		}
		return raw, time.Now(), nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, time.Time{}, err // *PathError names the file
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, err
	}
	if st.IsDir() {
		return nil, time.Time{}, fmt.Errorf("%s: is a directory", name)
	}
	if st.Size() > maxInputBytes {
		return nil, time.Time{}, fmt.Errorf("%s: message larger than %d MiB", name, maxInputBytes>>20)
	}
	// Sized from the stat: two reads (the file, then EOF) where
	// io.ReadAll's growing buffer took seven for a 4 KB mail.
	raw := make([]byte, 0, st.Size()+1)
	for {
		n, err := f.Read(raw[len(raw):cap(raw)])
		raw = raw[:len(raw)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("read %s: %w", name, err)
		}
		if len(raw) > maxInputBytes {
			return nil, time.Time{}, fmt.Errorf("%s: message larger than %d MiB", name, maxInputBytes>>20)
		}
		if len(raw) == cap(raw) {
			raw = slices.Grow(raw, 4096) // the file grew since the stat
		}
	}
	return raw, st.ModTime(), nil
}
