package outbound

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	texttemplate "text/template"

	"github.com/deskmail/deskmail/internal/lazyregexp"
	"github.com/deskmail/deskmail/locale"
)

//go:embed templates
var builtinTemplates embed.FS

// templateNames are the mails that have templates; a name is also the
// mail kind.
var templateNames = []string{KindConfirmation, KindAgentReply, KindNotification, KindClosing, KindCommandError, KindEscalation}

// pair is the text and HTML template of one mail. Built-in templates
// are read and compiled the first time a mail needs them (a `deskmail
// ingest` process queues one or two kinds of mail, and compiling all
// twenty cost it more CPU than the mail; reading the sources of all of
// them, copies out of the binary, cost it 0.2 ms); files from
// templates_dir are compiled when loaded, so that their mistakes are
// reported at start.
type pair struct {
	name             string
	textSrc, htmlSrc string
	// builtin, when not empty, is where in builtinTemplates the sources
	// are ("templates/<lang>/<name>", plus .txt.tmpl and .html.tmpl),
	// read by compiled instead of textSrc and htmlSrc.
	builtin string
	once    sync.Once
	text    *texttemplate.Template
	html    *htmltemplate.Template
	err     error
}

// newPair returns the templates of one mail, not yet compiled.
func newPair(name, text, html string) *pair {
	return &pair{name: name, textSrc: text, htmlSrc: html}
}

// newBuiltinPair returns the built-in templates of one mail at path
// in builtinTemplates, not yet read.
func newBuiltinPair(name, path string) *pair {
	return &pair{name: name, builtin: path}
}

// compiled compiles the pair on first call and returns the result of
// that compilation. Safe for concurrent use.
func (p *pair) compiled() error {
	p.once.Do(func() {
		if p.builtin != "" {
			if p.textSrc, p.htmlSrc, p.err = readBuiltin(p.builtin); p.err != nil {
				return
			}
		}
		p.text, p.html, p.err = compile(p.name, p.textSrc, p.htmlSrc)
		p.textSrc, p.htmlSrc = "", ""
	})
	return p.err
}

// readBuiltin reads the text and HTML sources of the built-in
// templates at path ("templates/<lang>/<name>").
func readBuiltin(path string) (text, html string, err error) {
	t, err := fs.ReadFile(builtinTemplates, path+".txt.tmpl")
	if err != nil {
		return "", "", fmt.Errorf("built-in template %s.txt.tmpl: %w", path, err)
	}
	h, err := fs.ReadFile(builtinTemplates, path+".html.tmpl")
	if err != nil {
		return "", "", fmt.Errorf("built-in template %s.html.tmpl: %w", path, err)
	}
	return string(t), string(h), nil
}

// templates holds every compiled template, keyed by
// "<channel>/<lang>/<name>" (channel "" for the shared ones), and the
// languages they cover.
type templates struct {
	m     map[string]*pair
	langs map[string]bool
}

// has reports whether mail can be written in lang.
func (t *templates) has(lang string) bool { return t.langs[strings.ToLower(lang)] }

var textFuncs = texttemplate.FuncMap{
	// quote prefixes every line with "> " (RFC 3676 quoting).
	"quote": func(s string) string {
		lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
		for i, l := range lines {
			if strings.HasPrefix(l, ">") {
				lines[i] = ">" + l
			} else {
				lines[i] = "> " + l
			}
		}
		return strings.Join(lines, "\n")
	},
	"join": strings.Join,
}

var htmlFuncs = htmltemplate.FuncMap{
	// text renders plain text as escaped HTML paragraphs.
	"text": textToHTML,
	"join": strings.Join,
}

// loadTemplates compiles the built-in templates and the overrides
// found in dir: <dir>/<lang>/<name>.txt.tmpl (and .html.tmpl) replace
// the built-in ones, <dir>/<channel>/<lang>/<name>… apply to one
// channel. Each file is overridden on its own. A <dir>/<lang> folder
// of a language that is not built in adds that language; a mail it
// has no file for is written from the English one.
func loadTemplates(dir string, channels []string) (*templates, error) {
	t := &templates{m: map[string]*pair{}, langs: map[string]bool{}}
	read := func(fsys fs.FS, path string) (string, bool, error) {
		b, err := fs.ReadFile(fsys, path)
		if errors.Is(err, fs.ErrNotExist) {
			return "", false, nil
		}
		if err != nil {
			return "", false, err
		}
		return string(b), true, nil
	}
	langs := append([]string{}, locale.Builtin...)
	var over fs.FS
	if dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("templates_dir %s is not a readable directory", dir)
		}
		over = os.DirFS(dir)
		added, err := TemplateLanguages(dir, channels)
		if err != nil {
			return nil, err
		}
		langs = append(langs, added...)
	}
	for _, lang := range langs {
		t.langs[lang] = true
		builtin := lang
		if !locale.Has(lang) {
			builtin = "en"
		}
		for _, name := range templateNames {
			if over == nil {
				// Nothing overrides them: read when first used. Their
				// files are embedded, so they are there (checked at
				// start all the same, for the error's sake).
				path := "templates/" + builtin + "/" + name
				for _, ext := range []string{".txt.tmpl", ".html.tmpl"} {
					if _, err := fs.Stat(builtinTemplates, path+ext); err != nil {
						return nil, fmt.Errorf("built-in template %s/%s%s missing: %v", builtin, name, ext, err)
					}
				}
				t.m["/"+lang+"/"+name] = newBuiltinPair(lang+"/"+name, path)
				continue
			}
			srcs := map[string]string{}
			overridden := false
			for _, ext := range []string{".txt.tmpl", ".html.tmpl"} {
				src, ok, err := read(builtinTemplates, "templates/"+builtin+"/"+name+ext)
				if err != nil || !ok {
					return nil, fmt.Errorf("built-in template %s/%s%s missing: %v", builtin, name, ext, err)
				}
				o, ok, err := read(over, lang+"/"+name+ext)
				if err != nil {
					return nil, fmt.Errorf("template %s: %w", filepath.Join(dir, lang, name+ext), err)
				}
				if ok {
					src, overridden = o, true
				}
				srcs[ext] = src
			}
			p := newPair(lang+"/"+name, srcs[".txt.tmpl"], srcs[".html.tmpl"])
			if overridden {
				if err := p.compiled(); err != nil {
					return nil, err
				}
			}
			t.m["/"+lang+"/"+name] = p
			for _, ch := range channels {
				chSrcs := map[string]string{}
				found := false
				for _, ext := range []string{".txt.tmpl", ".html.tmpl"} {
					o, ok, err := read(over, ch+"/"+lang+"/"+name+ext)
					if err != nil {
						return nil, fmt.Errorf("template %s: %w", filepath.Join(dir, ch, lang, name+ext), err)
					}
					if ok {
						found = true
						chSrcs[ext] = o
					} else {
						chSrcs[ext] = srcs[ext]
					}
				}
				if !found {
					continue
				}
				p := newPair(ch+"/"+lang+"/"+name, chSrcs[".txt.tmpl"], chSrcs[".html.tmpl"])
				if err := p.compiled(); err != nil {
					return nil, err
				}
				t.m[ch+"/"+lang+"/"+name] = p
			}
		}
	}
	return t, nil
}

// langTag is what a language folder of templates_dir is named: a BCP 47
// tag in lower case ("it", "pt-br").
var langTag = lazyregexp.New(`^[a-z]{2,3}(-[a-z0-9]{2,8})*$`)

// TemplateLanguages lists the languages that templates_dir dir adds to
// the built-in ones: its folders named like a language tag (channels'
// folders excepted) that hold at least one template file.
func TemplateLanguages(dir string, channels []string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("templates_dir %s: %w", dir, err)
	}
	isChannel := map[string]bool{}
	for _, c := range channels {
		isChannel[c] = true
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if !e.IsDir() || isChannel[n] || locale.Has(n) || !langTag.MatchString(n) {
			continue
		}
		files, err := filepath.Glob(filepath.Join(dir, n, "*.tmpl"))
		if err != nil || len(files) == 0 {
			continue
		}
		out = append(out, n)
	}
	return out, nil
}

func compile(name, text, html string) (*texttemplate.Template, *htmltemplate.Template, error) {
	tt, err := texttemplate.New(name + ".txt").Funcs(textFuncs).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, nil, fmt.Errorf("template %s.txt.tmpl: %w", name, err)
	}
	ht, err := htmltemplate.New(name + ".html").Funcs(htmlFuncs).Option("missingkey=error").Parse(html)
	if err != nil {
		return nil, nil, fmt.Errorf("template %s.html.tmpl: %w", name, err)
	}
	return tt, ht, nil
}

// render executes a mail's templates: the subject (the text template's
// "subject" block, "" when it has none), the plain text and the HTML.
func (t *templates) render(channel, lang, name string, data *TemplateData) (subject, text, html string, err error) {
	p, err := t.pair(channel, lang, name)
	if err != nil {
		return "", "", "", err
	}
	if subject, err = p.subject(data); err != nil {
		return "", "", "", err
	}
	text, html, err = p.body(data)
	return subject, text, html, err
}

// pair returns the compiled templates of one mail: the channel's own,
// else the language's, else the English ones.
func (t *templates) pair(channel, lang, name string) (*pair, error) {
	p := t.m[channel+"/"+lang+"/"+name]
	if p == nil {
		p = t.m["/"+lang+"/"+name]
	}
	if p == nil {
		p = t.m["/en/"+name]
	}
	if p == nil {
		return nil, fmt.Errorf("%w for %s", errNoTemplate, name)
	}
	if err := p.compiled(); err != nil {
		return nil, err
	}
	return p, nil
}

// subject executes the text template's "subject" block ("" when it
// has none). p must be compiled.
func (p *pair) subject(data *TemplateData) (string, error) {
	st := p.text.Lookup("subject")
	if st == nil {
		return "", nil
	}
	var b bytes.Buffer
	if err := st.Execute(&b, data); err != nil {
		return "", fmt.Errorf("template %s subject: %w", p.text.Name(), err)
	}
	return b.String(), nil
}

// body executes the plain text and HTML templates. p must be
// compiled. Safe for concurrent use.
func (p *pair) body(data *TemplateData) (text, html string, err error) {
	// One buffer, sized for the templates' own text and the message
	// they show (in the text part, then as HTML), so that executing
	// them does not grow it by doubling.
	size := 3 << 10
	if m := data.Message; m != nil {
		size += max(len(m.Text), len(m.HTML))
	}
	var b bytes.Buffer
	b.Grow(size)
	if err := p.text.Execute(&b, data); err != nil {
		return "", "", fmt.Errorf("template %s: %w", p.text.Name(), err)
	}
	text = cleanText(b.Bytes())
	b.Reset()
	if err := p.html.Execute(&b, data); err != nil {
		return "", "", fmt.Errorf("template %s: %w", p.html.Name(), err)
	}
	html = string(append(bytes.TrimSpace(b.Bytes()), '\n'))
	return text, html, nil
}

// cleanText trims trailing spaces (except the "-- " signature
// separator), collapses runs of blank lines and ends with one newline:
// CRLF becomes LF, each line loses its trailing spaces and tabs unless
// it is "-- ", no more than two newlines follow one another, and white
// space at either end gives way to a single final newline. One pass
// into one buffer (it was a split, a join and a regular expression
// over every rendered mail).
func cleanText(s []byte) string {
	out := make([]byte, 0, len(s)+1)
	for first := true; ; first = false {
		line, rest, more := bytes.Cut(s, nl)
		if more && len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1] // CRLF
		}
		if !first {
			// At most two newlines in a row: a third one, after lines
			// that are empty once trimmed, is dropped.
			if n := len(out); n < 2 || out[n-1] != '\n' || out[n-2] != '\n' {
				out = append(out, '\n')
			}
		}
		if string(line) != "-- " {
			line = bytes.TrimRight(line, " \t")
		}
		out = append(out, line...)
		if !more {
			break
		}
		s = rest
	}
	return string(append(bytes.TrimSpace(out), '\n'))
}

var nl = []byte{'\n'}
