package config

import (
	"bytes"
	"fmt"
)

// Limits on what reaches the YAML parser. goccy/go-yaml's parser takes time
// and memory that grow with the square of the nesting depth (`jobs: [[[…]]]`
// 100,000 deep, 200 KB, took 44 s and 15 GB), parses the keys of a block
// mapping by recursion, one level per key (26,000 keys, 128 KB: 2 s), and
// holds 400 to 600 bytes per token (a 256 KB flow list of numbers: 106 MB).
// So bounds checks the size, the nesting, the keys of each mapping and the
// tokens first, in one pass over the bytes, and the parser only ever sees a document it
// handles within 1 s and 100 MB. A valid config is 3 levels deep and no
// mapping has more than 5 keys; the limits are far above that, so that a
// mistake is reported by the checker, with its field, rather than here.
const (
	// MaxSize is the largest config file, in bytes.
	MaxSize = 128 << 10
	// MaxDepth is the deepest nesting of collections: flow [ and {, block
	// sequences and mappings, counted together.
	MaxDepth = 32
	// MaxKeys is the most keys one block mapping may have.
	MaxKeys = 64
	// MaxTokens bounds the YAML tokens (indicators, keys, scalars,
	// comments) of a document: goccy holds about 600 bytes for each. A
	// config of MaxJobs jobs has about 10,000.
	MaxTokens = 50000
)

// frame is an open block collection: its column and kind.
type frame struct {
	indent int
	seq    bool
	keys   int // of a mapping
}

// bounder scans a document line by line. It does not parse YAML: it tracks
// what can nest (indentation, "- ", "? ", "key: ", flow brackets and node
// properties) and skips what cannot (comments, quoted scalars, block
// scalars), so that its count of levels is never below the parser's by more
// than one per line.
type bounder struct {
	line   int
	tokens int
	stack  []frame
	flow   int  // open flow [ and {
	quote  byte // ' or " while a quoted scalar spans lines
	// In a block scalar (| or >), scalar is the indentation of its parent
	// (noScalar outside one) and content that of its lines: set by an
	// indentation indicator or by its first line, -1 until then. A line
	// indented less ends it.
	scalar, content int
}

const noScalar = -2

// bounds checks b against MaxSize, MaxDepth, MaxKeys and MaxTokens in time
// linear in its length. The error names the line.
func bounds(b []byte) error {
	if len(b) > MaxSize {
		return fmt.Errorf("config: larger than %d KiB", MaxSize>>10)
	}
	s := &bounder{scalar: noScalar}
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		s.line++
		if err := s.scanLine(bytes.TrimSuffix(line, []byte("\r"))); err != nil {
			return err
		}
	}
	return nil
}

// scanLine scans one line, without its end of line.
func (s *bounder) scanLine(l []byte) error {
	indent := 0
	for indent < len(l) && l[indent] == ' ' {
		indent++
	}
	blank := len(bytes.TrimSpace(l)) == 0
	marker := indent == 0 && (bytes.HasPrefix(l, []byte("---")) || bytes.HasPrefix(l, []byte("..."))) && blankAt(l, 3)
	if s.inBlockScalar(indent, blank, marker) {
		return nil
	}
	s.scalar = noScalar
	if s.quote != 0 {
		end, ok := closeQuote(l, 0, s.quote)
		if !ok {
			return nil
		}
		s.quote = 0
		return s.scanFlow(l, end)
	}
	if s.flow > 0 {
		return s.scanFlow(l, 0)
	}
	if blank {
		return nil
	}
	if err := s.token(); err != nil { // a scalar or a comment, at least
		return err
	}
	if l[indent] == '#' {
		return nil
	}
	pos := indent
	if marker {
		s.stack = s.stack[:0] // a new document
		pos = 3
	} else if indent == 0 && l[0] == '%' {
		return nil // a directive
	} else {
		for len(s.stack) > 0 && s.stack[len(s.stack)-1].indent > indent {
			s.stack = s.stack[:len(s.stack)-1]
		}
	}
	return s.scanBlock(l, pos, pos == indent)
}

// inBlockScalar reports whether a line indented by indent belongs to the
// block scalar s is in, if any: a blank line does, a document marker does
// not.
func (s *bounder) inBlockScalar(indent int, blank, marker bool) bool {
	if s.scalar == noScalar || marker {
		return false
	}
	if blank {
		return true
	}
	if s.content < 0 && indent > s.scalar {
		s.content = indent
	}
	return s.content >= 0 && indent >= s.content
}

// scanBlock scans the block context of l from pos (first: pos starts the
// line's content): entries, keys, node properties, and what ends the line's
// block part, a flow collection, a block scalar or a plain or quoted value.
func (s *bounder) scanBlock(l []byte, pos int, first bool) error {
	props := 0
	for {
		for pos < len(l) && (l[pos] == ' ' || l[pos] == '\t') {
			pos++
		}
		if pos >= len(l) {
			return nil
		}
		switch c := l[pos]; {
		case c == '#':
			return nil
		case (c == '-' || c == '?') && blankAt(l, pos+1):
			if err := s.open(pos, c == '-', first, props); err != nil {
				return err
			}
			pos++
		case c == ':' && blankAt(l, pos+1):
			pos++ // the value of a "? key"
		case c == '[' || c == '{':
			return s.scanFlow(l, pos)
		case c == '|' || c == '>':
			s.blockScalar(l, pos)
			return nil
		case c == '&' || c == '!':
			// An anchor or a tag: goccy nests a node under each one.
			props++
			if err := s.token(); err != nil {
				return err
			}
			if err := s.check(props); err != nil {
				return err
			}
			for pos < len(l) && !blankAt(l, pos) {
				pos++
			}
			continue
		case c == '"' || c == '\'':
			next, done, err := s.quoted(l, pos, first, props)
			if done || err != nil {
				return err
			}
			pos = next
		default:
			// A plain scalar, or the key of a "key: value".
			k := pos
			for k < len(l) && !endsPlain(l, k) {
				k++
			}
			if k >= len(l) || l[k] == '#' {
				return nil
			}
			if err := s.open(pos, false, first, props); err != nil {
				return err
			}
			pos = k + 1
		}
		first = false
	}
}

// blockScalar notes the block scalar (| or >) whose header is at l[pos].
func (s *bounder) blockScalar(l []byte, pos int) {
	s.scalar, s.content = -1, -1
	if n := len(s.stack); n > 0 {
		s.scalar = s.stack[n-1].indent
	}
	// An indentation indicator, as in |2 or >-1, sets the indentation of
	// the lines.
	for k := pos + 1; k < len(l) && k <= pos+2; k++ {
		if d := l[k]; d >= '1' && d <= '9' {
			s.content = s.scalar + int(d-'0')
			break
		}
	}
}

// quoted scans the quoted scalar at l[pos]. A key's value follows at next;
// after a value, or one that spans lines, the line is done.
func (s *bounder) quoted(l []byte, pos int, first bool, props int) (next int, done bool, err error) {
	c := l[pos]
	end, ok := closeQuote(l, pos+1, c)
	if !ok {
		s.quote = c
		return 0, true, nil
	}
	k := end
	for k < len(l) && l[k] == ' ' {
		k++
	}
	if k < len(l) && l[k] == ':' && blankAt(l, k+1) {
		return k + 1, false, s.open(pos, false, first, props)
	}
	return 0, true, s.scanFlow(l, end) // the rest of the line, if any
}

// open notes a block sequence entry or mapping key at column col: it opens a
// collection unless it continues the one at that column (first: it starts
// its line).
func (s *bounder) open(col int, seq, first bool, props int) error {
	if err := s.token(); err != nil {
		return err
	}
	if first && len(s.stack) > 0 {
		top := &s.stack[len(s.stack)-1]
		if top.indent == col && top.seq && !seq {
			// A key at the column of a sequence ends the sequence: the
			// sequence was the value of the mapping's previous key.
			s.stack = s.stack[:len(s.stack)-1]
			if len(s.stack) > 0 {
				top = &s.stack[len(s.stack)-1]
			}
		}
		if len(s.stack) > 0 && top.indent == col && top.seq == seq {
			if !seq {
				top.keys++
				if top.keys > MaxKeys {
					return fmt.Errorf("config: line %d: more than %d keys in one mapping", s.line, MaxKeys)
				}
			}
			return nil
		}
	}
	s.stack = append(s.stack, frame{indent: col, seq: seq, keys: 1})
	return s.check(props)
}

// token counts a token and refuses the line past MaxTokens.
func (s *bounder) token() error {
	if s.tokens++; s.tokens > MaxTokens {
		return fmt.Errorf("config: line %d: more than %d YAML tokens", s.line, MaxTokens)
	}
	return nil
}

// check refuses the line when the open collections are deeper than MaxDepth.
func (s *bounder) check(extra int) error {
	if len(s.stack)+s.flow+extra > MaxDepth {
		return fmt.Errorf("config: line %d: nested deeper than %d levels", s.line, MaxDepth)
	}
	return nil
}

// scanFlow scans l from pos counting flow brackets; quoted scalars and
// comments are skipped. It also scans what follows a quoted or flow node in
// block context, so that nothing on a line goes uncounted.
func (s *bounder) scanFlow(l []byte, pos int) error {
	for ; pos < len(l); pos++ {
		switch c := l[pos]; c {
		case '"', '\'':
			end, ok := closeQuote(l, pos+1, c)
			if !ok {
				s.quote = c
				return nil
			}
			pos = end - 1
		case '#':
			if pos == 0 || l[pos-1] == ' ' || l[pos-1] == '\t' {
				return nil
			}
		case '[', '{':
			s.flow++
			if err := s.token(); err != nil {
				return err
			}
			if err := s.check(0); err != nil {
				return err
			}
		case ']', '}', ',':
			if err := s.token(); err != nil {
				return err
			}
			if c != ',' && s.flow > 0 {
				s.flow--
			}
		}
	}
	return nil
}

// closeQuote returns the offset just past the quote q that closes a scalar
// whose text starts at l[pos:], and whether it is on this line.
func closeQuote(l []byte, pos int, q byte) (int, bool) {
	for ; pos < len(l); pos++ {
		switch {
		case q == '"' && l[pos] == '\\':
			pos++
		case l[pos] == q && q == '\'' && pos+1 < len(l) && l[pos+1] == '\'':
			pos++ // '' is a quote inside a single-quoted scalar
		case l[pos] == q:
			return pos + 1, true
		}
	}
	return pos, false
}

// blankAt reports whether l has a space, a tab or its end at i.
func blankAt(l []byte, i int) bool {
	return i >= len(l) || l[i] == ' ' || l[i] == '\t'
}

// endsPlain reports whether a plain scalar ends at l[k]: at the ": " of a
// key, or at a comment, whose "#" follows a blank.
func endsPlain(l []byte, k int) bool {
	return (l[k] == ':' && blankAt(l, k+1)) || (l[k] == '#' && (l[k-1] == ' ' || l[k-1] == '\t'))
}
