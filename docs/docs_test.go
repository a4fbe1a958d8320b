// Package docs holds no code: its test keeps the repository's pointers to
// its documentation true. Code comments, messages and deployment files
// name documents of this repository only (never specification notes kept
// elsewhere), every document and section they name exists, every
// relative link between the Markdown files resolves, and checks.md and
// mapping.md explain every finding code and row reason the code emits.
package docs

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/masflow/masflow/internal/advisor"
)

// root is the repository, seen from this package.
const root = ".."

// skipDirs are never documentation sources: VCS data, build output, state.
var skipDirs = map[string]bool{".git": true, "bin": true, "build": true, ".masflow": true, ".state": true, "node_modules": true}

// sourceFile reports whether a file is code or configuration whose text
// may name a document.
func sourceFile(name string) bool {
	switch filepath.Ext(name) {
	case ".go", ".sql", ".yaml", ".yml", ".service", ".sh":
		return true
	}
	return name == "Dockerfile" || name == "Makefile"
}

// walk calls fn for each file of the repository that keep selects, with
// its path relative to the root and its text.
func walk(t *testing.T, keep func(name string) bool, fn func(rel, text string)) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if skipDirs[d.Name()] || (strings.HasPrefix(d.Name(), ".") && path != root && d.Name() != ".ci") {
				return filepath.SkipDir
			}
			return nil
		}
		if !keep(d.Name()) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		fn(rel, string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// outside are names of the specification notes the code was first
// written from; they are not in the repository, and docs/ restates them.
var outside = regexp.MustCompile(`data-mapping\.md|mas-schema\.md|performance\.md|\.\./shared|shared/spec|spec/[\w-]+\.md`)

// mdRef is a Markdown file named in code, with the sections quoted after
// it: `docs/mapping.md, "Users", "Passwords"`, across comment lines too.
var mdRef = regexp.MustCompile(`([\w./-]*[\w-]+\.md)\b((?:,\s*(?:(?://|--|#)\s*)?\\?"[^"\n\\]+\\?")*)`)

var quoted = regexp.MustCompile(`"([^"\n\\]+)\\?"`)

func TestCodeNamesOnlyRepositoryDocs(t *testing.T) {
	checked := 0
	walk(t, sourceFile, func(rel, text string) {
		if strings.HasSuffix(rel, "_test.go") && filepath.Dir(rel) == "docs" {
			return // this file names the outside documents on purpose
		}
		for _, m := range outside.FindAllString(text, -1) {
			t.Errorf("%s names %q, which is not part of the repository: point at the docs/ file that holds the fact", rel, m)
		}
		for _, m := range mdRef.FindAllStringSubmatch(text, -1) {
			doc, ok := resolve(rel, m[1])
			if !ok {
				t.Errorf("%s names %s, which does not exist (docs/X.md, README.md or a path from the repository root)", rel, m[1])
				continue
			}
			checked++
			for _, s := range quoted.FindAllStringSubmatch(m[2], -1) {
				if !hasSection(t, doc, s[1]) {
					t.Errorf("%s names section %q of %s, which has no such heading or bold lead-in", rel, s[1], m[1])
				}
			}
		}
	})
	if checked < 20 {
		t.Errorf("only %d document references found: is the pattern out of date?", checked)
	}
}

// resolve finds a named document: from the repository root, or beside the
// file that names it.
func resolve(from, name string) (string, bool) {
	if strings.Contains(name, "..") {
		return "", false
	}
	for _, p := range []string{filepath.Join(root, name), filepath.Join(root, filepath.Dir(from), name)} {
		if info, err := os.Stat(p); err == nil && !info.IsDir() {
			return p, true
		}
	}
	return "", false
}

// headingOrBold matches a Markdown heading, or a bold lead-in at the
// start of a paragraph or list item (`**Subset runs**`, `- **Phase …**`).
var headingOrBold = regexp.MustCompile(`(?m)^(?:#{1,6}\s+(.+)|(?:[-*]\s+)?\*\*(.+?)\*\*)`)

// hasSection reports whether doc has a heading or bold lead-in starting
// with section (case and Markdown code quotes ignored).
func hasSection(t *testing.T, doc, section string) bool {
	t.Helper()
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	want := plain(section)
	for _, m := range headingOrBold.FindAllStringSubmatch(string(b), -1) {
		title := plain(m[1] + m[2])
		if strings.HasPrefix(title, want) || strings.Contains(title, want) {
			return true
		}
	}
	return false
}

func plain(s string) string { return strings.ToLower(strings.ReplaceAll(s, "`", "")) }

// mdLink is an inline Markdown link to a relative target.
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

func TestMarkdownLinksResolve(t *testing.T) {
	walk(t, func(name string) bool { return strings.HasSuffix(name, ".md") }, func(rel, text string) {
		for _, m := range mdLink.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			path := filepath.Join(root, filepath.Dir(rel), file)
			if file == "" {
				path = filepath.Join(root, rel)
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s links to %s, which does not exist", rel, target)
				continue
			}
			if anchor != "" && strings.HasSuffix(path, ".md") && !hasAnchor(t, path, anchor) {
				t.Errorf("%s links to %s: %s has no heading with anchor #%s", rel, target, file, anchor)
			}
		}
	})
}

var heading = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*$`)

// hasAnchor reports whether a heading of doc has the anchor GitHub gives
// it: lower case, punctuation dropped, spaces as hyphens.
func hasAnchor(t *testing.T, doc, anchor string) bool {
	t.Helper()
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range heading.FindAllStringSubmatch(string(b), -1) {
		if slug(m[1]) == anchor {
			return true
		}
	}
	return false
}

func slug(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(title) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestSlug(t *testing.T) {
	for title, want := range map[string]string{
		"Stopped and started, verified":       "stopped-and-started-verified",
		"Differences from `mas-cli syn2mas`":  "differences-from-mas-cli-syn2mas",
		"Synapse's config against MAS's":      "synapses-config-against-mass",
		"Reads that cost O(page)":             "reads-that-cost-opage",
		"masflow_import and worker.log_level": "masflow_import-and-workerlog_level",
	} {
		if got := slug(title); got != want {
			t.Errorf("slug(%q) = %q, want %q", title, got, want)
		}
	}
}

// docText reads a document of docs/.
func docText(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Every check of the advisor's catalogue has its row in checks.md.
func TestChecksDocumentsEveryCode(t *testing.T) {
	text := docText(t, "checks.md")
	for _, c := range advisor.Catalogue() {
		if !strings.Contains(text, "| `"+c.Code+"`") && !strings.Contains(text, ", `"+c.Code+"`") {
			t.Errorf("checks.md has no row for %s (%s)", c.Code, c.Condition)
		}
	}
}

// Every reason the mapping reports (internal/mapping/report.go) is
// explained in mapping.md.
func TestMappingDocumentsEveryReason(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "../internal/mapping/report.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	text := docText(t, "mapping.md")
	n := 0
	for _, decl := range f.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || gen.Tok != token.CONST {
			continue
		}
		for _, spec := range gen.Specs {
			for _, v := range spec.(*ast.ValueSpec).Values {
				lit, ok := v.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				reason, _ := strconv.Unquote(lit.Value)
				n++
				if reason == "migrated_with_refresh_token" {
					continue // counted, never reported: described as "written with its refresh token"
				}
				if !strings.Contains(text, "`"+reason+"`") {
					t.Errorf("mapping.md does not explain reason %s", reason)
				}
			}
		}
	}
	if n < 15 {
		t.Errorf("found %d reasons in report.go: is the parser out of date?", n)
	}
}
