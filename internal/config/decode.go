package config

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// decode parses b into f. The YAML is parsed into a syntax tree first and
// the tree is checked against the shape of f in document order, so that
// every error names its field (database.max_open_conns, jobs[2].name) and
// the first mistake in the file is the one reported; only then does
// goccy/go-yaml fill f from the tree. goccy's own errors name Go types and
// positions rather than fields, report one of several unknown keys at
// random and silently truncate 1.5 to an int.
func decode(b []byte, f *File) (err error) {
	// A config error is one line; a parser panic must not become a stack trace.
	defer func() {
		if r := recover(); r != nil {
			err = errors.New("config: malformed YAML")
		}
	}()
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")) // a byte order mark
	if len(b) > MaxSize {
		return bounds(b)
	}
	if !utf8.Valid(b) {
		line := 1 + strings.Count(string(b[:invalidUTF8(b)]), "\n")
		return fmt.Errorf("config: invalid YAML at line %d: not UTF-8 text", line)
	}
	// Nothing reaches the parser that it cannot handle quickly.
	if err := bounds(b); err != nil {
		return err
	}
	// Duplicate keys are allowed here and reported by check, with the path.
	tree, err := parser.ParseBytes(b, 0, parser.AllowDuplicateMapKey())
	if err != nil {
		return syntaxError(b, err)
	}
	var body ast.Node
	for i, doc := range tree.Docs {
		if i == 0 {
			body = doc.Body
			continue
		}
		tk := doc.Start
		if tk == nil && doc.Body != nil {
			tk = doc.Body.GetToken()
		}
		if tk != nil {
			return fmt.Errorf("config: must be a single YAML document, another one starts at line %d", tk.Position.Line)
		}
		return errors.New("config: must be a single YAML document")
	}
	if body == nil || body.Type() == ast.NullType {
		return nil // empty: the defaults
	}
	c := checker{anchors: make(map[string]ast.Node)}
	if err := c.check(body, reflect.TypeOf(f).Elem(), ""); err != nil {
		return err
	}
	if err := yaml.NodeToValue(body, f, yaml.DisallowUnknownField()); err != nil {
		// check accepts only what decodes; this is a fallback.
		return positionError(err)
	}
	return nil
}

// checker checks a syntax tree against a Go type.
type checker struct {
	anchors map[string]ast.Node // in document order, as aliases see them
}

func (c *checker) check(n ast.Node, t reflect.Type, path string) error {
	n, err := c.resolve(n, path)
	if err != nil || n == nil || n.Type() == ast.NullType {
		return err // null: the field keeps its default
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[map[string]*FileJob]() {
		t = builtinSection
	}
	switch t.Kind() {
	case reflect.Struct:
		return c.checkMapping(n, t, path)
	case reflect.Slice:
		seq, ok := n.(*ast.SequenceNode)
		if !ok {
			return fmt.Errorf("%s: want a list, got %s", name(path), describe(n))
		}
		for i, v := range seq.Values {
			if err := c.check(v, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	case reflect.String:
		switch n.(type) {
		case *ast.StringNode, *ast.LiteralNode, *ast.IntegerNode, *ast.FloatNode,
			*ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
			return nil
		}
		return fmt.Errorf("%s: want a string, got %s", name(path), describe(n))
	case reflect.Int:
		switch n := n.(type) {
		case *ast.IntegerNode:
			if v, ok := n.Value.(uint64); ok && v > math.MaxInt {
				return fmt.Errorf("%s: %s is out of range", name(path), n.Token.Value)
			}
			return nil
		case *ast.StringNode:
			// goccy reads an integer too large for int64 as a string.
			if n.Token != nil && n.Token.Type != token.SingleQuoteType && n.Token.Type != token.DoubleQuoteType &&
				bigInt.MatchString(n.Value) {
				return fmt.Errorf("%s: %s is out of range", name(path), n.Value)
			}
		}
		return fmt.Errorf("%s: want an integer, got %s", name(path), describe(n))
	case reflect.Bool:
		if _, ok := n.(*ast.BoolNode); ok {
			return nil
		}
		return fmt.Errorf("%s: want true or false, got %s", name(path), describe(n))
	}
	return fmt.Errorf("%s: unsupported field type %s", name(path), t) // a bug in file
}

var bigInt = regexp.MustCompile(`^[-+]?[0-9]+$`)

// resolve follows anchors and aliases to the node they stand for.
func (c *checker) resolve(n ast.Node, path string) (ast.Node, error) {
	for range 64 {
		switch v := n.(type) {
		case *ast.AnchorNode:
			if v.Name != nil {
				c.anchors[v.Name.GetToken().Value] = v.Value
			}
			n = v.Value
		case *ast.AliasNode:
			alias := ""
			if v.Value != nil {
				alias = v.Value.GetToken().Value
			}
			target, ok := c.anchors[alias]
			if !ok {
				return nil, fmt.Errorf("%s: alias *%s refers to no anchor before it", name(path), quoteIfNeeded(alias))
			}
			n = target
		case *ast.TagNode:
			return nil, fmt.Errorf("%s: YAML tags such as %s are not supported", name(path), quoteIfNeeded(v.Start.Value))
		default:
			return n, nil
		}
	}
	return nil, fmt.Errorf("%s: aliases nested too deep", name(path))
}

// checkMapping checks a mapping against struct type t: every key is a field
// of t (by its yaml tag), none twice, and every value fits its field.
func (c *checker) checkMapping(n ast.Node, t reflect.Type, path string) error {
	var pairs []*ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		pairs = m.Values
	case *ast.MappingValueNode:
		pairs = []*ast.MappingValueNode{m}
	default:
		return fmt.Errorf("%s: want a mapping, got %s", name(path), describe(n))
	}
	seen := make(map[string]int) // key: line of its first occurrence
	for _, p := range pairs {
		if p.Key != nil && p.Key.IsMergeKey() {
			// goccy lets the later of a merged and an own key win, where
			// YAML says the own key does, and cannot merge a list.
			return fmt.Errorf("%s: merge keys (<<) are not supported; write the fields out", name(path))
		}
		key, ok := keyString(p.Key)
		if !ok {
			return fmt.Errorf("%s: keys must be plain strings, got %s", name(path), describe(p.Key))
		}
		field := join(path, key)
		line := 0
		if tk := p.Key.GetToken(); tk != nil && tk.Position != nil {
			line = tk.Position.Line
		}
		if first, dup := seen[key]; dup {
			return fmt.Errorf("%s: given twice, at lines %d and %d", field, first, line)
		}
		seen[key] = line
		ft, ok := fieldType(t, key)
		if !ok {
			return fmt.Errorf("%s: unknown field, want one of %s", field, strings.Join(fieldNames(t), ", "))
		}
		if err := c.check(p.Value, ft, field); err != nil {
			return err
		}
	}
	return nil
}

// keyString returns the text of a scalar mapping key.
func keyString(k ast.Node) (string, bool) {
	if mk, ok := k.(*ast.MappingKeyNode); ok { // ? key
		k = mk.Value
	}
	switch k := k.(type) {
	case *ast.StringNode:
		return k.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.NullNode, *ast.InfinityNode, *ast.NanNode:
		return k.GetToken().Value, true
	}
	return "", false
}

// fieldType returns the type of t's field tagged yaml:"key".
func fieldType(t reflect.Type, key string) (reflect.Type, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); yamlName(f) == key {
			return f.Type, true
		}
	}
	return nil, false
}

func fieldNames(t reflect.Type) []string {
	names := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		names = append(names, yamlName(t.Field(i)))
	}
	return names
}

func yamlName(f reflect.StructField) string {
	n, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return n
}

// join appends a key to a field path, quoting a key that is not a plain
// identifier so that the path stays on one line and unambiguous.
func join(path, key string) string {
	key = quoteIfNeeded(key)
	if path == "" {
		return key
	}
	return path + "." + key
}

// name is the path as a message names it.
func name(path string) string {
	if path == "" {
		return "config"
	}
	return path
}

var plainKey = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func quoteIfNeeded(s string) string {
	if plainKey.MatchString(s) {
		return s
	}
	return strconv.Quote(truncate(s, 64))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) && len(s) > 0 { // do not split a rune
		s = s[:len(s)-1]
	}
	return s + "..."
}

// describe names what a node is, for "got ..." in a message.
func describe(n ast.Node) string {
	switch n := n.(type) {
	case nil, *ast.NullNode:
		return "null"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.LiteralNode:
		return "a multi-line string"
	case *ast.StringNode:
		return strconv.Quote(truncate(n.Value, 64))
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return truncate(n.GetToken().Value, 64)
	case *ast.AnchorNode:
		return "an anchor"
	case *ast.AliasNode:
		return "an alias"
	case *ast.TagNode:
		return "a tagged value"
	case *ast.MappingKeyNode:
		return "a complex key"
	}
	return "a " + strings.ToLower(n.Type().String())
}

// syntaxError turns a parser error into one line naming the position and,
// when the lines before it parse, the last field before it: a syntax error
// has no field of its own.
func syntaxError(b []byte, err error) error {
	var ye yaml.Error
	if !errors.As(err, &ye) || ye.GetToken() == nil || ye.GetToken().Position == nil {
		return fmt.Errorf("config: invalid YAML: %s", oneLine(err.Error()))
	}
	pos := ye.GetToken().Position
	msg := oneLine(ye.GetMessage())
	if strings.Contains(ye.GetMessage(), "'\t'") {
		msg = "found a tab character where YAML allows only spaces; indent with spaces"
	}
	at := fmt.Sprintf("line %d, column %d", pos.Line, pos.Column)
	if last := lastKeyBefore(b, pos.Line); last != "" {
		at += ", after " + last
	}
	return fmt.Errorf("config: invalid YAML at %s: %s", at, msg)
}

// lastKeyBefore returns the path of the last key in the lines before line,
// if they parse on their own.
func lastKeyBefore(b []byte, line int) string {
	end := 0
	for range line - 1 {
		i := strings.IndexByte(string(b[end:]), '\n')
		if i < 0 {
			return ""
		}
		end += i + 1
	}
	tree, err := parser.ParseBytes(b[:end], 0, parser.AllowDuplicateMapKey())
	if err != nil || len(tree.Docs) == 0 {
		return ""
	}
	last := ""
	var walk func(n ast.Node, path string, depth int)
	walk = func(n ast.Node, path string, depth int) {
		if depth > 32 {
			return
		}
		switch n := n.(type) {
		case *ast.AnchorNode:
			walk(n.Value, path, depth+1)
		case *ast.MappingNode:
			for _, p := range n.Values {
				walk(p, path, depth+1)
			}
		case *ast.MappingValueNode:
			if k, ok := keyString(n.Key); ok {
				last = join(path, k)
				walk(n.Value, last, depth+1)
			}
		case *ast.SequenceNode:
			for i, v := range n.Values {
				walk(v, fmt.Sprintf("%s[%d]", path, i), depth+1)
			}
		}
	}
	walk(tree.Docs[len(tree.Docs)-1].Body, "", 0)
	return last
}

// positionError formats a goccy decoding error on one line.
func positionError(err error) error {
	var ye yaml.Error
	if errors.As(err, &ye) && ye.GetToken() != nil && ye.GetToken().Position != nil {
		pos := ye.GetToken().Position
		return fmt.Errorf("config: line %d, column %d: %s", pos.Line, pos.Column, oneLine(ye.GetMessage()))
	}
	return fmt.Errorf("config: %s", oneLine(err.Error()))
}

// invalidUTF8 returns the offset of the first byte of b that is not UTF-8.
func invalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// oneLine joins the lines of a message.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
