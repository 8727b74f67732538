package config

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// deep returns n opening brackets followed by n closing ones.
func deep(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }

// indented returns n keys, each on its own line and indented one more space
// than the one before.
func indented(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%sk%d:\n", strings.Repeat(" ", i), i)
	}
	return b.String()
}

func TestParse_Nesting(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string // the error; "" for none
	}{
		// Refused before the parser sees them.
		{"Flow33", "jobs: " + deep(32) + "\n", "config: line 1: nested deeper than 32 levels"},
		{"Flow60000", "jobs: " + deep(60000) + "\n", "config: line 1: nested deeper than 32 levels"},
		{"FlowMappings", "jobs: " + strings.Repeat("{a: ", 40) + strings.Repeat("}", 40) + "\n", "config: line 1: nested deeper than 32 levels"},
		{"FlowOverLines", "jobs:\n  - name: a\n    sql: " + strings.Repeat("[\n", 40), "config: line 32: nested deeper than 32 levels"},
		{"BlockDashes", "jobs:\n" + strings.Repeat("- ", 40) + "x\n", "config: line 2: nested deeper than 32 levels"},
		{"BlockDashesOnLines", "jobs:\n" + func() string {
			var b strings.Builder
			for i := range 40 {
				b.WriteString(strings.Repeat("  ", i) + "-\n")
			}
			return b.String()
		}(), "config: line 33: nested deeper than 32 levels"},
		{"BlockIndentation", indented(40), "config: line 33: nested deeper than 32 levels"},
		{"ComplexKeys", strings.Repeat("? ", 40) + "x\n", "config: line 1: nested deeper than 32 levels"},
		{"Tags", "jobs: " + strings.Repeat("!t ", 40) + "x\n", "config: line 1: nested deeper than 32 levels"},
		{"Anchors", "jobs: " + strings.Repeat("&a ", 40) + "x\n", "config: line 1: nested deeper than 32 levels"},
		{"AfterQuotedKey", "'a': " + deep(40) + "\n", "config: line 1: nested deeper than 32 levels"},
		{"AfterFlowKey", "[a]: " + deep(40) + "\n", "config: line 1: nested deeper than 32 levels"},
		{"AfterMultiLineQuote", "sql: 'a\n b' " + deep(40) + "\n", "config: line 2: nested deeper than 32 levels"},
		{"AfterBlockScalar", "jobs:\n  - sql: |\n      [[[[\n    x: " + deep(40) + "\n", "config: line 4: nested deeper than 32 levels"},
		{"BlockScalarIndicator", "a: |2\n [[[[\n" + deep(40) + "\n", "config: line 3: nested deeper than 32 levels"},
		{"AfterDocumentMarker", "--- |\n  text\n--- " + deep(40) + "\n", "config: line 3: nested deeper than 32 levels"},
		{"AfterQuoteOverThreeLines", "sql: 'a\n b\n c' " + deep(40) + "\n", "config: line 3: nested deeper than 32 levels"},
		{"AfterSpacedQuotedKey", "'a'  : " + deep(40) + "\n", "config: line 1: nested deeper than 32 levels"},
		{"AfterComplexKeyValue", "? a\n: " + deep(40) + "\n", "config: line 2: nested deeper than 32 levels"},
		{"AfterDirective", "%YAML 1.2\n---\njobs: " + deep(40) + "\n", "config: line 3: nested deeper than 32 levels"},
		{"KeysBetweenSequences", strings.Repeat("k:\n- x\n", 65), "config: line 129: more than 64 keys in one mapping"},
		{"ManyKeys", "database:\n" + strings.Repeat("  path: x.db\n", 65), "config: line 66: more than 64 keys in one mapping"},
		{"ManyTopLevelKeys", strings.Repeat("jobs: []\n", 10000), "config: line 65: more than 64 keys in one mapping"},
		{"TooLarge", strings.Repeat("#", MaxSize+1), "config: larger than 128 KiB"},
		{"TooLargeJobs", manyJobs(MaxJobs) + strings.Repeat("# padding\n", MaxSize/10), "config: larger than 128 KiB"},

		// Within the limits: the checker has its say.
		{"Flow31", "jobs: " + deep(31) + "\n", "jobs[0]: want a mapping, got a list"},
		{"Indentation32", indented(32), "k0: unknown field, want one of database, scheduler, history, builtin, jobs"},
		{"ManyKeysUpTo64", "database:\n" + strings.Repeat("  path: x.db\n", 64), "database.path: given twice, at lines 2 and 3"},
		{"BracketsInSingleQuotes", "jobs: '" + deep(1000) + "'\n", `jobs: want a list, got "` + strings.Repeat("[", 64) + `..."`},
		{"BracketsInDoubleQuotes", "jobs: \"\\\"" + deep(1000) + "\"\n", `jobs: want a list, got "\"` + strings.Repeat("[", 63) + `..."`},
		{"BracketsInComment", "# " + deep(1000) + "\njobs: [] # " + strings.Repeat("[", 1000) + "\n", ""},
		{"BracketsInBlockScalar", "jobs:\n  - name: a\n    schedule: '@daily'\n    sql: |\n      SELECT '" + deep(1000) + "';\n      SELECT 1;\n", ""},
		{"BracketsInPlainScalar", "jobs:\n  - name: a\n    schedule: '@daily'\n    sql: SELECT json('" + deep(1000) + "')\n", ""},
		{"DashesInBlockScalar", "jobs:\n  - name: a\n    schedule: '@daily'\n    sql: >\n      " + strings.Repeat("- ", 1000) + "\n      SELECT 1\n", ""},
		{"QuotesOverLines", "jobs:\n  - name: a\n    schedule: '@daily'\n    sql: \"SELECT '[[[\n      ]]]'\"\n", ""},
		{"BlankLineInBlockScalar", "a: |\n  [[[[\n\n  [[[[\nb: " + deep(29) + "\n", "a: unknown field, want one of database, scheduler, history, builtin, jobs"},
		{"MaxJobs", manyJobs(MaxJobs), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := Parse([]byte(tt.doc))
			took := time.Since(start)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			t.Logf("%d bytes: %s", len(tt.doc), took)
		})
	}
}

// astDepth returns how deep goccy nests collections and node properties.
func astDepth(n ast.Node) int {
	switch n := n.(type) {
	case *ast.MappingNode:
		d := 0
		for _, v := range n.Values {
			d = max(d, astDepth(v.Key), astDepth(v.Value))
		}
		return d + 1
	case *ast.MappingValueNode:
		return max(astDepth(n.Key), astDepth(n.Value)) + 1
	case *ast.MappingKeyNode:
		return astDepth(n.Value) + 1
	case *ast.SequenceNode:
		d := 0
		for _, v := range n.Values {
			d = max(d, astDepth(v))
		}
		return d + 1
	case *ast.AnchorNode:
		return astDepth(n.Value) + 1
	case *ast.TagNode:
		return astDepth(n.Value) + 1
	}
	return 0
}

// checkNesting holds the invariant of bounds: what it lets through, goccy
// nests at most twice MaxDepth deep (its count of block levels may be off
// by one per line, never by more).
func checkNesting(t *testing.T, b []byte) {
	checkConfig(t, b)
	if bounds(b) != nil {
		return
	}
	tree, err := parser.ParseBytes(b, 0, parser.AllowDuplicateMapKey())
	if err != nil {
		return
	}
	for _, doc := range tree.Docs {
		if d := astDepth(doc.Body); d > 2*MaxDepth {
			t.Fatalf("bounds accepted a document goccy nests %d deep", d)
		}
	}
}

// FuzzParse_Nesting fuzzes the bound on nesting with deeply nested seeds of
// every kind bounds counts.
func FuzzParse_Nesting(f *testing.F) {
	for _, doc := range []string{
		"jobs: " + deep(40) + "\n",
		"jobs: " + strings.Repeat("{a: ", 40) + strings.Repeat("}", 40) + "\n",
		"jobs:\n" + strings.Repeat("- ", 40) + "x\n",
		indented(40),
		strings.Repeat("? ", 40) + "x\n",
		"jobs: " + strings.Repeat("!t &a ", 20) + "x\n",
		"jobs:\n  - sql: |\n      [[[[\n    x: " + deep(40) + "\n",
		"a: |2\n [[[[\n" + deep(40) + "\n",
		"sql: 'a\n b' " + deep(40) + "\n",
		"[a]: " + deep(40) + "\n",
		"--- |\n  text\n--- " + deep(40) + "\n",
		"jobs:\n  - name: a\n    sql: \"" + deep(40) + "\"\n    x: [\n" + strings.Repeat("  [\n", 40),
		"a:\n- b:\n  - c:\n    - d:\n      - " + deep(30) + "\n",
	} {
		f.Add([]byte(doc))
	}
	f.Fuzz(checkNesting)
}
