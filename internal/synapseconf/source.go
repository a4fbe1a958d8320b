package synapseconf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// source is one of Synapse's config files as read: its text split into
// lines, the unit of every edit, and its YAML node tree, which says on
// which lines each key sits. The tree is only ever read: edits splice the
// original text so that everything not changed keeps its bytes.
type source struct {
	path  string
	data  []byte
	lines []string // each with its line ending; the last one may have none
	eol   string   // the file's line ending, for the lines we add
	// root is the top-level mapping; nil when the file holds no document
	// (empty, or only comments).
	root *yaml.Node
}

// entry is one key of a block mapping and the lines it occupies, as
// 0-based line indexes.
type entry struct {
	key, value *yaml.Node
	// head is the first of the comment lines attached above the key:
	// same indentation, no blank line in between. head == start when
	// there are none.
	head  int
	start int // the key's line
	// end is one past the value's last line. Blank lines and comments
	// indented no deeper than the key that follow the value are not
	// part of it: they belong to what comes next.
	end    int
	indent int // the key's column, 0-based
}

// parse reads one config file the way Synapse needs it: a single YAML
// document whose top level is a mapping, or nothing at all.
func parse(path string, data []byte) (*source, error) {
	s := &source{path: path, data: data, lines: splitLines(data), eol: "\n"}
	if bytes.Contains(data, []byte("\r\n")) {
		s.eol = "\r\n"
	}
	root, _, err := decode(data)
	if err != nil {
		return nil, yamlError(path, err)
	}
	s.root = root
	return s, nil
}

// decode returns a file's top-level mapping node and its decoded value,
// both nil when the file holds no document. The decoded value catches
// what the node tree lets through, such as a key defined twice.
func decode(data []byte) (*yaml.Node, map[string]any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil, nil, nil
	} else if err != nil {
		return nil, nil, err
	}
	var more yaml.Node
	if err := dec.Decode(&more); err == nil {
		return nil, nil, shapeError{more.Line, "a second YAML document starts here; Synapse reads only one per file"}
	} else if !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, nil, shapeError{root.Line, "the top level must be a mapping of settings (key: value)"}
	}
	var m map[string]any
	if err := root.Decode(&m); err != nil {
		return nil, nil, err
	}
	return root, m, nil
}

// shapeError is valid YAML that is not a Synapse config file.
type shapeError struct {
	line int
	msg  string
}

func (e shapeError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

// yamlLine finds "line N: message" in the parser's error text.
var yamlLine = regexp.MustCompile(`line (\d+): (.*)`)

// backquoted is a value yaml.v3 quotes in an error.
var backquoted = regexp.MustCompile("`[^`]*`")

// yamlError names the file and line of a parse error and what to do.
func yamlError(path string, err error) error {
	const fix = "fix the file (Synapse cannot read it either) and run again"
	var shape shapeError
	if errors.As(err, &shape) {
		return fmt.Errorf("%s:%d: %s; %s", path, shape.line, shape.msg, fix)
	}
	// yaml.v3 quotes the value it cannot decode between backquotes: it
	// may be a secret (macaroon_secret_key: !!int …).
	msg := backquoted.ReplaceAllString(strings.TrimPrefix(err.Error(), "yaml: "), "`…`")
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("%s:%s: invalid YAML: %s; %s", path, m[1], m[2], fix)
	}
	return fmt.Errorf("%s: invalid YAML: %s; %s", path, msg, fix)
}

// splitLines cuts text after each newline, keeping the endings.
func splitLines(data []byte) []string {
	var out []string
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n') + 1
		if i == 0 {
			i = len(data)
		}
		out = append(out, string(data[:i]))
		data = data[i:]
	}
	return out
}

func isBlank(line string) bool { return strings.TrimSpace(line) == "" }

func isComment(line string) bool { return strings.HasPrefix(strings.TrimLeft(line, " \t"), "#") }

func indentOf(line string) int { return len(line) - len(strings.TrimLeft(line, " ")) }

// topEntries lists the keys of the top-level mapping. The first key gets
// no attached comments: what is above it is the file's header.
func (s *source) topEntries() []entry {
	if s.root == nil || len(s.root.Content) == 0 {
		return nil
	}
	return s.entries(s.root, s.root.Content[0].Line-1, len(s.lines))
}

// entries lists the keys of the block mapping m, whose lines lie within
// [lo, hi): comments above the first key are only attached down to lo.
func (s *source) entries(m *yaml.Node, lo, hi int) []entry {
	var out []entry
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := m.Content[i]
		out = append(out, entry{key: k, value: m.Content[i+1], start: k.Line - 1, indent: k.Column - 1})
	}
	for i := range out {
		e := &out[i]
		e.end = hi
		if i+1 < len(out) {
			e.end = out[i+1].start
		}
		for e.end-1 > e.start && s.trails(e.end-1, e.indent) {
			e.end--
		}
		floor := lo
		if i > 0 {
			floor = out[i-1].end
		}
		e.head = e.start
		for e.head-1 >= floor && isComment(s.lines[e.head-1]) && indentOf(s.lines[e.head-1]) == e.indent {
			e.head--
		}
	}
	return out
}

// trails says whether line i, after a value, is outside it: blank, or a
// comment no deeper than the key (a deeper one is inside the block).
func (s *source) trails(i, indent int) bool {
	l := s.lines[i]
	return isBlank(l) || (isComment(l) && indentOf(l) <= indent)
}

// child returns the value of key in mapping m and its index in m.Content.
func child(m *yaml.Node, key string) (*yaml.Node, int) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Kind == yaml.ScalarNode && m.Content[i].Value == key {
			return m.Content[i+1], i
		}
	}
	return nil, -1
}

// anchorIn returns the first node of n's subtree that defines an anchor,
// nil if none.
func anchorIn(n *yaml.Node) *yaml.Node {
	if n.Anchor != "" {
		return n
	}
	for _, c := range n.Content {
		if a := anchorIn(c); a != nil {
			return a
		}
	}
	return nil
}
