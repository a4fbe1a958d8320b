package synapseconf

import (
	"bytes"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// plan holds the edits of one file, made on its lines: the lines dropped
// and the lines written before a given line (at len(lines): at the end).
// A replaced line is dropped and its new text inserted before it.
type plan struct {
	src     *source
	drop    []bool
	insert  map[int][]string
	changes []lineChange
	// expect is the file's top level as it must decode after the edits;
	// every edit makes the same change to it, so that reading the result
	// back proves the splice touched nothing else.
	expect map[string]any
	// removed counts the top-level keys removed: a file left with none
	// must still hold a mapping.
	removed int
}

// lineChange is a Change and the line it was made at, for ordering.
type lineChange struct {
	line int
	Change
}

// planFile decides the edits of one file. masHome says this file is where
// the delegation section goes: the last one defining it, or the main file
// when none does.
func planFile(src *source, masHome bool, d Delegation) (*plan, error) {
	_, expect, _ := decode(src.data) // parse succeeded on the same bytes
	if expect == nil {
		expect = map[string]any{}
	}
	p := &plan{src: src, drop: make([]bool, len(src.lines)), insert: map[int][]string{}, expect: expect}
	entries := src.topEntries()
	hasMAS := false
	for _, e := range entries {
		var err error
		switch key := e.key.Value; {
		case key == masKey:
			hasMAS = true
			if masHome {
				err = p.setMAS(e, d)
			}
		case e.key.Kind == yaml.ScalarNode:
			err = p.resolve(e, key)
		}
		if err != nil {
			return nil, err
		}
	}
	if masHome && !hasMAS {
		p.appendMAS(d)
	}
	if p.removed > 0 && p.removed == len(entries) && !masHome {
		p.keepMapping()
	}
	if err := p.refuseFlowTop(); err != nil {
		return nil, err
	}
	sort.SliceStable(p.changes, func(i, j int) bool { return p.changes[i].line < p.changes[j].line })
	return p, nil
}

// refuseFlowTop refuses edits to a top level written as {...}: its keys
// do not have lines of their own, so the planned line edits are void.
func (p *plan) refuseFlowTop() error {
	root := p.src.root
	if root == nil || root.Style&yaml.FlowStyle == 0 || len(p.changes) == 0 {
		return nil
	}
	return fmt.Errorf("%s:%d: the whole file is one flow mapping ({...}); rewrite it with one key per line "+
		"(block style) and run again, or apply docs/reconfigure.md by hand", p.src.path, root.Line)
}

// resolve applies the treatment of a conflicting top-level key.
func (p *plan) resolve(e entry, key string) error {
	t, ok := conflicting[key]
	switch {
	case !ok:
		return nil
	case t == removeKey, t == removeUnlessOff && !isOff(e.value):
		return p.removeTop(e, key, "removed")
	case t == disableKey:
		return p.disable(e, key)
	case t == dropMSC3861:
		return p.dropMSC3861(e, key)
	}
	return nil
}

// removeTop removes a top-level key with its value.
func (p *plan) removeTop(e entry, key, action string) error {
	if err := p.remove(e, key); err != nil {
		return err
	}
	p.removed++
	delete(p.expect, key)
	p.record(e.start, key, action)
	return nil
}

// disable sets key.enabled to false in place, keeping the rest of the
// block. A block without enabled is left alone: with delegation on,
// Synapse takes a missing enabled as off.
func (p *plan) disable(e entry, key string) error {
	now, err := p.decoded(e, key)
	if err != nil || offValue(now["enabled"]) {
		return err
	}
	m, err := p.editable(e, key, "set enabled: false")
	if err != nil {
		return err
	}
	if m.Style&yaml.FlowStyle != 0 {
		return p.refuseFlow(m, key, "set enabled: false")
	}
	v, _ := child(m, "enabled")
	if v == nil { // cannot happen without an alias or merge key, refused above
		return fmt.Errorf("%s:%d: %s.enabled is not written in this block; set it to false by hand", p.src.path, m.Line, key)
	}
	if err := p.setScalar(v, "false", key+".enabled"); err != nil {
		return err
	}
	p.expectBlock(key)["enabled"] = false
	p.record(v.Line-1, key+".enabled", "set to false (was "+v.Value+")")
	return nil
}

// dropMSC3861 removes experimental_features.msc3861, and the whole
// section when it held nothing else.
func (p *plan) dropMSC3861(e entry, key string) error {
	now, err := p.decoded(e, key)
	if err != nil || !hasKey(now, "msc3861") {
		return err
	}
	m, err := p.editable(e, key, "remove msc3861")
	switch {
	case err != nil:
		return err
	case len(m.Content) == 2:
		return p.removeTop(e, key, "removed (it held only msc3861)")
	case m.Style&yaml.FlowStyle != 0:
		return p.refuseFlow(m, key, "remove msc3861")
	}
	_, i := child(m, "msc3861")
	c := p.src.entries(m, e.start+1, e.end)[i/2]
	if err := p.remove(c, key+".msc3861"); err != nil {
		return err
	}
	delete(p.expectBlock(key), "msc3861")
	p.record(c.start, key+".msc3861", "removed")
	return nil
}

// decoded returns the value of a key that must be a mapping (or null), as
// Synapse reads it: aliases and merge keys applied.
func (p *plan) decoded(e entry, key string) (map[string]any, error) {
	var m map[string]any
	if err := e.value.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s:%d: %s must be a mapping; fix it (Synapse would refuse it too) and run again",
			p.src.path, e.value.Line, key)
	}
	return m, nil
}

// editable returns the mapping under a key whose contents must be edited.
// Contents defined elsewhere (an alias, a merge key) or reused elsewhere
// (an anchor) are refused: editing them here would be a guess.
func (p *plan) editable(e entry, key, what string) (*yaml.Node, error) {
	v := e.value
	fix := fmt.Sprintf("write %s out in full here and %s by hand, then run again", key, what)
	switch {
	case v.Kind == yaml.AliasNode:
		return nil, fmt.Errorf("%s:%d: %s is an alias (*%s); %s", p.src.path, v.Line, key, v.Value, fix)
	case v.Anchor != "":
		return nil, fmt.Errorf("%s:%d: %s defines the anchor &%s, which other keys may reuse; %s", p.src.path, v.Line, key, v.Anchor, fix)
	}
	if k, i := child(v, "<<"); i >= 0 {
		return nil, fmt.Errorf("%s:%d: %s merges another mapping (<<: ...); %s", p.src.path, k.Line, key, fix)
	}
	return v, nil
}

// expectBlock is the expected decoded mapping under a top-level key.
func (p *plan) expectBlock(key string) map[string]any {
	m, _ := p.expect[key].(map[string]any)
	if m == nil {
		m = map[string]any{} // a mismatch verification will report
	}
	return m
}

// refuseFlow explains why a {...} mapping is not edited and what to do.
func (p *plan) refuseFlow(m *yaml.Node, key, what string) error {
	return fmt.Errorf("%s:%d: %s is written in flow style ({...}), which this rewrite does not edit; "+
		"%s by hand or write %s with one key per line, then run again", p.src.path, m.Line, key, what, key)
}

// remove drops an entry's lines with the comments attached above it. An
// anchor defined inside would leave its aliases dangling: refused.
func (p *plan) remove(e entry, key string) error {
	a := anchorIn(e.key)
	if a == nil {
		a = anchorIn(e.value)
	}
	if a != nil {
		return fmt.Errorf("%s:%d: %s defines the anchor &%s, which this rewrite would delete; "+
			"replace its aliases (*%s) by the values they stand for, then run again", p.src.path, a.Line, key, a.Anchor, a.Anchor)
	}
	p.dropLines(e.head, e.end)
	return nil
}

// dropLines drops lines [from, to). When the dropped block stood alone
// between blank lines, the blank lines after it go too (before it at the
// end of the file), so that no gap of two blank runs is left behind.
func (p *plan) dropLines(from, to int) {
	lines := p.src.lines
	before := from == 0 || isBlank(lines[from-1])
	after := to == len(lines) || isBlank(lines[to])
	if before && after {
		for to < len(lines) && isBlank(lines[to]) {
			to++
		}
		if to == len(lines) {
			for from > 0 && isBlank(lines[from-1]) {
				from--
			}
		}
	}
	for i := from; i < to; i++ {
		p.drop[i] = true
	}
}

// setScalar replaces a one-line scalar by text, leaving the rest of its
// line (the key, a trailing comment) as it was.
func (p *plan) setScalar(v *yaml.Node, text, key string) error {
	refuse := func(why string) error {
		return fmt.Errorf("%s:%d: %s %s; set it to %s by hand and run again", p.src.path, v.Line, key, why, text)
	}
	if v.Kind != yaml.ScalarNode || v.Anchor != "" || v.Style&(yaml.TaggedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		return refuse("is not a plain value (alias, anchor, tag or block scalar)")
	}
	line := p.src.lines[v.Line-1]
	start := runeOffset(line, v.Column-1)
	end := scalarEnd(line, start, v.Style)
	if end < 0 || v.Style == 0 && line[start:end] != v.Value {
		return refuse("spans several lines")
	}
	p.drop[v.Line-1] = true
	p.insert[v.Line-1] = append(p.insert[v.Line-1], line[:start]+text+line[end:])
	return nil
}

// runeOffset converts a character column to a byte offset.
func runeOffset(line string, col int) int {
	for i := range line {
		if col == 0 {
			return i
		}
		col--
	}
	return len(line)
}

// scalarEnd returns the byte offset just past a scalar starting at start
// on line, or -1 when it does not end on this line.
func scalarEnd(line string, start int, style yaml.Style) int {
	body := strings.TrimRight(line, "\r\n")
	switch {
	case style&yaml.DoubleQuotedStyle != 0:
		for i := start + 1; i < len(body); i++ {
			if body[i] == '\\' {
				i++
			} else if body[i] == '"' {
				return i + 1
			}
		}
		return -1
	case style&yaml.SingleQuotedStyle != 0:
		for i := start + 1; i < len(body); i++ {
			if body[i] == '\'' && (i+1 == len(body) || body[i+1] != '\'') {
				return i + 1
			} else if body[i] == '\'' {
				i++
			}
		}
		return -1
	}
	end := len(body)
	for _, mark := range []string{" #", "\t#"} {
		if i := strings.Index(body[start:], mark); i >= 0 && start+i < end {
			end = start + i
		}
	}
	return start + len(strings.TrimRight(body[start:end], " \t"))
}

// setMAS makes an existing delegation section the intended one. Its
// contents are replaced whole (an inline secret gives way to
// secret_path); the comments above it stay.
func (p *plan) setMAS(e entry, d Delegation) error {
	var now map[string]any
	if e.value.Kind == yaml.MappingNode && e.value.Decode(&now) == nil && sameMAS(now, d) {
		return nil
	}
	if a := anchorIn(e.value); a != nil {
		return fmt.Errorf("%s:%d: %s defines the anchor &%s, which replacing it would delete; "+
			"replace its aliases (*%s) by the values they stand for, then run again", p.src.path, a.Line, masKey, a.Anchor, a.Anchor)
	}
	for i := e.start; i < e.end; i++ {
		p.drop[i] = true
	}
	p.insert[e.start] = append(p.insert[e.start], p.masBlock(d, e.indent)...)
	p.expect[masKey] = wantMAS(d)
	action := "replaced by enabled: true, endpoint, secret_path"
	if _, ok := now["secret"]; ok {
		action += " (the inline secret is gone)"
	}
	p.record(e.start, masKey, action)
	return nil
}

// sameMAS says whether a decoded section is exactly the intended one.
func sameMAS(m map[string]any, d Delegation) bool {
	return len(m) == 3 && m["enabled"] == true && m["endpoint"] == d.Endpoint && m["secret_path"] == d.SecretPath
}

// appendMAS adds the delegation section at the end of the file, after a
// blank line.
func (p *plan) appendMAS(d Delegation) {
	n := len(p.src.lines)
	var add []string
	if last := p.lastKept(); last >= 0 && !isBlank(p.src.lines[last]) {
		add = append(add, p.src.eol)
	}
	add = append(add, "# Synapse hands authentication to the Matrix Authentication Service (added by masflow)."+p.src.eol)
	indent := 0
	if p.src.root != nil && len(p.src.root.Content) > 0 {
		indent = p.src.root.Content[0].Column - 1
	}
	p.insert[n] = append(p.insert[n], append(add, p.masBlock(d, indent)...)...)
	p.expect[masKey] = wantMAS(d)
	p.record(n, masKey, "added (enabled: true, endpoint, secret_path)")
}

// lastKept is the index of the last line the edits keep, -1 if none.
func (p *plan) lastKept() int {
	for i := len(p.src.lines) - 1; i >= 0; i-- {
		if !p.drop[i] {
			return i
		}
	}
	return -1
}

// masBlock renders the delegation section at the given indentation,
// nesting by the file's own step. Values are double-quoted: a URL or path
// never needs YAML's plain-scalar rules examined.
func (p *plan) masBlock(d Delegation, indent int) []string {
	pad, in := strings.Repeat(" ", indent), strings.Repeat(" ", indent+p.step())
	eol := p.src.eol
	return []string{
		pad + masKey + ":" + eol,
		in + "enabled: true" + eol,
		in + "endpoint: " + strconv.Quote(d.Endpoint) + eol,
		in + "secret_path: " + strconv.Quote(d.SecretPath) + eol,
	}
}

// step is the file's indentation step: how much deeper the first nested
// block mapping sits than its key; 2 when there is none.
func (p *plan) step() int {
	for _, e := range p.src.topEntries() {
		v := e.value
		if v.Kind == yaml.MappingNode && v.Style&yaml.FlowStyle == 0 && len(v.Content) > 0 && v.Content[0].Column > e.key.Column {
			return v.Content[0].Column - e.key.Column
		}
	}
	return 2
}

// keepMapping writes {} into a file whose every key was removed: Synapse
// skips, with a warning, a file that is not a mapping.
func (p *plan) keepMapping() {
	n, eol := len(p.src.lines), p.src.eol
	note := []string{
		"# masflow removed every setting of this file: each conflicts with MAS delegation." + eol,
		"# The original is " + filepath.Base(p.src.path) + backupSuffix + "." + eol,
		"{}" + eol,
	}
	p.insert[n] = append(p.insert[n], note...)
	p.record(n, "", "left as an empty mapping ({}) so that Synapse still reads it")
}

// record adds a change to the audit trail.
func (p *plan) record(line int, key, action string) {
	p.changes = append(p.changes, lineChange{line, Change{File: p.src.path, Key: key, Action: action}})
}

// render returns the file's text with the edits made.
func (p *plan) render() []byte {
	var b bytes.Buffer
	emit := func(l string) {
		if b.Len() > 0 && b.Bytes()[b.Len()-1] != '\n' {
			b.WriteString(p.src.eol) // the old last line had no newline
		}
		b.WriteString(l)
	}
	for i, l := range p.src.lines {
		for _, x := range p.insert[i] {
			emit(x)
		}
		if !p.drop[i] {
			emit(l)
		}
	}
	for _, x := range p.insert[len(p.src.lines)] {
		emit(x)
	}
	return b.Bytes()
}
