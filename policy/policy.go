package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"
)

// CurrentVersion is the policy file format version this package reads.
const CurrentVersion = 1

// ErrInvalid is wrapped by every error Parse returns for a policy file that is not valid.
var ErrInvalid = errors.New("invalid policy")

// Policy is a parsed and validated policy file.
type Policy struct {
	// File is the name the policy was parsed under (used in error messages).
	File string
	// Version is the file's format version.
	Version int
	// Access holds the codec endpoint's authorization rules. It is never nil: a file without an access section denies everything.
	Access *Access
	// Namespaces holds the proxy's per-namespace encryption rules; nil when the file has no namespaces section, in
	// which case every namespace gets DefaultRules (use Policy.Namespace rather than reading it directly).
	Namespaces *Namespaces
}

// Error is one problem found in a policy file, located by line and column (1-based) and by the dotted path of the field.
type Error struct {
	File   string
	Line   int
	Column int
	// Field is the path of the offending field, e.g. "access.rules[1].namespaces[0]".
	Field string
	Msg   string
}

// Error formats the problem as "file:line:col: field: message".
func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d:%d", e.File, e.Line, e.Column)
	}
	if e.Field != "" {
		return fmt.Sprintf("%s: %s: %s", loc, e.Field, e.Msg)
	}
	return fmt.Sprintf("%s: %s", loc, e.Msg)
}

// Unwrap makes every Error match ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }

// Load reads and parses the policy file at path.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	return Parse(path, data)
}

// maxPolicyBytes bounds the file size so a wrong path (e.g. a log file) fails fast instead of exhausting memory.
const maxPolicyBytes = 4 << 20

// Parse parses and validates a policy file's contents; name is used in error messages.
// All problems found are returned together (errors.Join of *Error values).
func Parse(name string, data []byte) (*Policy, error) {
	if len(data) > maxPolicyBytes {
		return nil, &Error{File: name, Msg: fmt.Sprintf("file is larger than %d bytes", maxPolicyBytes)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: name, Msg: "policy file is empty"}
		}
		return nil, &Error{File: name, Msg: err.Error()}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line, col := 0, 0
		if err == nil {
			line, col = extra.Line, extra.Column
		}
		return nil, &Error{File: name, Line: line, Column: col, Msg: "only one YAML document is allowed"}
	}
	p := &parser{file: name}
	pol := p.policy(&doc)
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return pol, nil
}

// parser walks yaml.v3 nodes so every error can name its line and field path; it collects errors rather than stopping at the first.
type parser struct {
	file string
	errs []error
}

func (p *parser) errorf(n *yaml.Node, field, format string, args ...any) {
	e := &Error{File: p.file, Field: field, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	p.errs = append(p.errs, e)
}

// sections maps each top-level key to its parser. A new section (e.g. "namespaces") is one more entry here and one more field in Policy.
var sections = map[string]func(p *parser, n *yaml.Node, pol *Policy){
	"version": func(p *parser, n *yaml.Node, pol *Policy) {
		v, ok := p.int(n, "version")
		if !ok {
			return
		}
		if v != CurrentVersion {
			p.errorf(n, "version", "unsupported policy version %d (this build reads version %d)", v, CurrentVersion)
			return
		}
		pol.Version = v
	},
	"access": func(p *parser, n *yaml.Node, pol *Policy) {
		pol.Access = p.access(n, "access")
	},
	"namespaces": func(p *parser, n *yaml.Node, pol *Policy) {
		pol.Namespaces = p.namespaces(n, "namespaces")
	},
}

func (p *parser) policy(doc *yaml.Node) *Policy {
	pol := &Policy{File: p.file}
	root := doc
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		root = doc.Content[0]
	}
	if p.rejectAliases(root) {
		return nil
	}
	seenVersion := false
	p.mapping(root, "", func(key string, kn, vn *yaml.Node) {
		sec, ok := sections[key]
		if !ok {
			p.errorf(kn, key, "unknown section (known: access, namespaces, version)")
			return
		}
		if key == "version" {
			seenVersion = true
		}
		sec(p, vn, pol)
	})
	if !seenVersion && root.Kind == yaml.MappingNode {
		p.errorf(root, "version", "missing (add \"version: %d\")", CurrentVersion)
	}
	if pol.Access == nil {
		pol.Access = &Access{}
	}
	return pol
}

// rejectAliases refuses anchors and aliases: a reviewed security file should say everything literally, and refusing them rules out alias-expansion bombs.
func (p *parser) rejectAliases(n *yaml.Node) bool {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		p.errorf(n, "", "YAML anchors and aliases are not allowed in a policy file")
		return true
	}
	for _, c := range n.Content {
		if p.rejectAliases(c) {
			return true
		}
	}
	return false
}

// mapping calls fn for each key of a mapping node, reporting non-mappings, non-string keys and duplicate keys.
func (p *parser) mapping(n *yaml.Node, field string, fn func(key string, kn, vn *yaml.Node)) bool {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, field, "expected a mapping, got %s", kindName(n))
		return false
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		if kn.Kind != yaml.ScalarNode || kn.ShortTag() != "!!str" {
			p.errorf(kn, field, "keys must be strings")
			continue
		}
		path := kn.Value
		if field != "" {
			path = field + "." + kn.Value
		}
		if prev, dup := seen[kn.Value]; dup {
			p.errorf(kn, path, "duplicate key (first defined on line %d)", prev)
			continue
		}
		seen[kn.Value] = kn.Line
		fn(kn.Value, kn, vn)
	}
	return true
}

func (p *parser) str(n *yaml.Node, field string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		p.errorf(n, field, "expected a string, got %s", kindName(n))
		return "", false
	}
	return n.Value, true
}

func (p *parser) int(n *yaml.Node, field string) (int, bool) {
	var v int
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&v) != nil {
		p.errorf(n, field, "expected an integer, got %s", kindName(n))
		return 0, false
	}
	return v, true
}

// strList reads a sequence of strings; each returned element keeps its node for later validation messages.
func (p *parser) strList(n *yaml.Node, field string) ([]string, []*yaml.Node) {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, field, "expected a list, got %s", kindName(n))
		return nil, nil
	}
	var out []string
	var nodes []*yaml.Node
	for i, c := range n.Content {
		s, ok := p.str(c, fmt.Sprintf("%s[%d]", field, i))
		if !ok {
			continue
		}
		out = append(out, s)
		nodes = append(nodes, c)
	}
	return out, nodes
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return fmt.Sprintf("string %q", n.Value)
		case "!!null":
			return "null"
		default:
			return fmt.Sprintf("%s %s", n.ShortTag()[2:], n.Value)
		}
	case yaml.DocumentNode:
		return "a document"
	}
	return "nothing"
}
