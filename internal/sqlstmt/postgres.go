package sqlstmt

import (
	"fmt"
	"strings"
)

// SQLite's parser cannot read PostgreSQL's SQL, so SplitPostgres is a
// conservative lexical split: it splits the SQL at the semicolons outside
// comments, quoted strings, quoted identifiers and dollar-quoted bodies, and
// classifies each statement by its first words. It does not check syntax,
// names or types, and cannot see inside a DO block or a function or
// procedure that the SQL calls.

// SplitPostgres returns the statements of sql, PostgreSQL's SQL, in order;
// empty ones are left out. Each statement's Text is trimmed, without its
// ';', and its Kind is read from its first words: Begin (BEGIN, START),
// Commit (COMMIT, END, PREPARE TRANSACTION), Rollback (ROLLBACK, ABORT),
// Savepoint, Release, RollbackTo (ROLLBACK [WORK|TRANSACTION] TO), Set (SET
// other than SET LOCAL, SET TRANSACTION and SET CONSTRAINTS, which hold for
// the transaction), Reset (RESET, DISCARD) and Vacuum. The split skips
// comments (-- and nested /* */), 'strings' (and E'strings' with backslash
// escapes), "identifiers" and $tag$ bodies $tag$; one not closed is an
// error.
func SplitPostgres(sql string) ([]Statement, error) {
	l := pgLexer{sql: sql}
	for l.i < len(sql) {
		if err := l.next(); err != nil {
			return nil, err
		}
	}
	l.end(len(sql))
	return l.out, nil
}

// pgLexer is SplitPostgres's state: the statements so far, and the first
// words, outside comments and quotes and upper case, of the one it is in.
type pgLexer struct {
	sql   string
	i     int // where the next token starts
	start int // where the current statement starts
	words []string
	out   []Statement
}

// word notes w as one of the statement's first three words.
func (l *pgLexer) word(w string) {
	if len(l.words) < 3 {
		l.words = append(l.words, w)
	}
}

// end ends the current statement at i, keeping it unless it is empty.
func (l *pgLexer) end(i int) {
	text := strings.TrimSpace(l.sql[l.start:i])
	if text != "" && len(l.words) > 0 {
		l.out = append(l.out, Statement{Kind: pgKind(l.words), Text: text, Dialect: PostgreSQL})
	}
	l.words, l.start = nil, i+1
}

func isPgWord(c byte) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c >= 0x80
}

// next reads the token at l.i.
func (l *pgLexer) next() error {
	sql, i := l.sql, l.i
	c := sql[i]
	switch {
	case c == ';':
		l.end(i)
		l.i++
	case c == '-' && strings.HasPrefix(sql[i:], "--"):
		n := strings.IndexByte(sql[i:], '\n')
		if n < 0 {
			l.i = len(sql)
		} else {
			l.i += n
		}
	case c == '/' && strings.HasPrefix(sql[i:], "/*"):
		return l.blockComment()
	case c == '\'':
		return l.quoted()
	case c == '"':
		n := strings.IndexByte(sql[i+1:], '"')
		if n < 0 {
			return fmt.Errorf(`a " identifier is not closed`)
		}
		l.word(`"`)
		l.i += n + 2
	case c == '$' && (i == 0 || !isPgWord(sql[i-1])):
		return l.dollar()
	case isPgWord(c):
		j := i
		for j < len(sql) && isPgWord(sql[j]) {
			j++
		}
		l.word(strings.ToUpper(sql[i:j]))
		l.i = j
	default:
		if c > ' ' {
			l.word(string(c))
		}
		l.i++
	}
	return nil
}

// blockComment skips a /* comment */, which nests.
func (l *pgLexer) blockComment() error {
	sql := l.sql
	depth, j := 1, l.i+2
	for ; j < len(sql) && depth > 0; j++ {
		switch {
		case strings.HasPrefix(sql[j:], "/*"):
			depth++
			j++
		case strings.HasPrefix(sql[j:], "*/"):
			depth--
			j++
		}
	}
	if depth > 0 {
		return fmt.Errorf("a /* comment is not closed")
	}
	l.i = j
	return nil
}

// quoted skips a 'string', where two quotes are one, or an E'string', where
// a backslash escapes too.
func (l *pgLexer) quoted() error {
	sql, i := l.sql, l.i
	escapes := i > 0 && (sql[i-1] == 'E' || sql[i-1] == 'e') && (i < 2 || !isPgWord(sql[i-2]))
	j := i + 1
	for ; j < len(sql); j++ {
		if escapes && sql[j] == '\\' {
			j++
			continue
		}
		if sql[j] == '\'' {
			if j+1 < len(sql) && sql[j+1] == '\'' {
				j++
				continue
			}
			break
		}
	}
	if j >= len(sql) {
		return fmt.Errorf("a ' string is not closed")
	}
	l.word("'")
	l.i = j + 1
	return nil
}

// dollar skips a $tag$ body $tag$, or a parameter such as $1.
func (l *pgLexer) dollar() error {
	sql, i := l.sql, l.i
	j := i + 1
	if j < len(sql) && (sql[j] < '0' || sql[j] > '9') { // $1 is a parameter
		for j < len(sql) && isPgWord(sql[j]) {
			j++
		}
	}
	if j < len(sql) && sql[j] == '$' {
		tag := sql[i : j+1]
		n := strings.Index(sql[j+1:], tag)
		if n < 0 {
			return fmt.Errorf("a %s body is not closed", tag)
		}
		l.word("$")
		l.i = j + 1 + n + len(tag)
		return nil
	}
	l.i = j // $1, a parameter
	return nil
}

// pgKind is the kind of a statement that starts with the words w (upper
// case).
func pgKind(w []string) Kind {
	word := func(i int) string {
		if i < len(w) {
			return w[i]
		}
		return ""
	}
	switch word(0) {
	case "BEGIN", "START":
		return Begin
	case "COMMIT", "END":
		return Commit
	case "ROLLBACK", "ABORT":
		if word(1) == "TO" || word(2) == "TO" { // ROLLBACK [WORK|TRANSACTION] TO
			return RollbackTo
		}
		return Rollback
	case "SAVEPOINT":
		return Savepoint
	case "RELEASE":
		return Release
	case "PREPARE":
		if word(1) == "TRANSACTION" {
			return Commit
		}
	case "SET":
		switch word(1) {
		case "LOCAL", "TRANSACTION", "CONSTRAINTS":
			return Other
		}
		return Set
	case "RESET", "DISCARD":
		return Reset
	case "VACUUM":
		return Vacuum
	}
	return Other
}
