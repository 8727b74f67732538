package schema

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
)

// Object is one table or index of the worker's schema as SQLite
// describes it, which is what a database's objects are compared with.
type Object struct {
	typ, name, table string
	sql              string   // the CREATE statement that makes it
	columns          []string // "name type notnull pk" per column, or the indexed columns
}

func (o Object) columnNames() string {
	names := make([]string, len(o.columns))
	for i, c := range o.columns {
		names[i], _, _ = strings.Cut(c, " ")
	}
	return strings.Join(names, ", ")
}

// expectedSchemas caches expectedSchema by version.
var expectedSchemas sync.Map // int → []Object

// expectedSchema returns the objects that the first version migrations
// create, in creation order, as SQLite itself describes them: the
// migrations are run on an in-memory database, so the schema is written
// once, in migrations, and never restated.
func expectedSchema(ctx context.Context, version int) ([]Object, error) {
	if v, ok := expectedSchemas.Load(version); ok {
		return v.([]Object), nil
	}
	mem := OpenRaw(":memory:")
	defer mem.Close()
	mem.SetMaxOpenConns(1) // one connection: one in-memory database
	for _, m := range migrations[:version] {
		if _, err := mem.ExecContext(ctx, m); err != nil {
			return nil, fmt.Errorf("cannot build the expected schema: %w", err)
		}
	}
	objs, err := readSchema(ctx, mem)
	if err != nil {
		return nil, err
	}
	expectedSchemas.Store(version, objs)
	return objs, nil
}

// readSchema returns the tables and explicit indexes of d, with their
// columns, in creation order.
func readSchema(ctx context.Context, d *sql.DB) ([]Object, error) {
	rows, err := d.QueryContext(ctx, `SELECT type, name, tbl_name, sql FROM sqlite_schema
		WHERE type IN ('table', 'index') AND sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY rowid`)
	if err != nil {
		return nil, err
	}
	var objs []Object
	for rows.Next() {
		var o Object
		if err := rows.Scan(&o.typ, &o.name, &o.table, &o.sql); err != nil {
			rows.Close()
			return nil, err
		}
		objs = append(objs, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range objs {
		q := `SELECT name || ' ' || upper(type) || ' ' || "notnull" || ' ' || pk FROM pragma_table_info(?) ORDER BY cid`
		if objs[i].typ == "index" {
			q = `SELECT coalesce(name, '') FROM pragma_index_info(?) ORDER BY seqno`
		}
		cols, err := strings1(ctx, d, q, objs[i].name)
		if err != nil {
			return nil, err
		}
		objs[i].columns = cols
	}
	return objs, nil
}

func strings1(ctx context.Context, d *sql.DB, q string, args ...any) ([]string, error) {
	rows, err := d.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// diffSchema compares the objects a database has with the ones it should
// have: it returns the expected objects that are missing, which can be
// created, or an error naming an object of the same name with another
// shape, which cannot be repaired without touching someone's data.
func diffSchema(have, want []Object) ([]Object, error) {
	byName := make(map[string]Object, len(have))
	for _, o := range have {
		byName[o.name] = o
	}
	var missing []Object
	for _, w := range want {
		h, ok := byName[w.name]
		switch {
		case !ok:
			missing = append(missing, w)
		case h.typ != w.typ:
			return nil, fmt.Errorf("%s is %s %s, want %s %s", w.name, article(h.typ), h.typ, article(w.typ), w.typ)
		case w.typ == "index" && (h.table != w.table || !slices.Equal(h.columns, w.columns)):
			return nil, fmt.Errorf("index %s is on %s (%s), want %s (%s)", w.name, h.table, strings.Join(h.columns, ", "), w.table, strings.Join(w.columns, ", "))
		case w.typ == "table" && !containsAll(h.columns, w.columns):
			return nil, fmt.Errorf("table %s has columns (%s), want (%s)", w.name, h.columnNames(), w.columnNames())
		}
	}
	return missing, nil
}

// containsAll reports whether have has every column of want, the same in
// name, type, NOT NULL and primary key. Columns an operator added are
// allowed: the worker names the columns it writes.
func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

func article(typ string) string {
	if typ == "index" {
		return "an"
	}
	return "a"
}

// errNotWorkerDB is the remedy given with a schema the worker cannot use.
const notWorkerRemedy = "not this worker's database? point database.path at another file, or rename the object"

// Inspect reads the database file at path without changing it, so that a
// file the worker is going to refuse is left exactly as it was: no journal
// mode switch, no -journal, no migration. It returns the objects of the
// worker's schema that are missing and will be created once the database is
// open (the worker's own tables, dropped by an operator's SQL), or an error
// saying why the file is not one the worker may write to.
//
// f is the locked descriptor of the file: the header is read through it. A
// file with a -wal (or a -journal) is read with mode=ro, so that committed
// transactions still in the -wal count; one without is read with
// immutable=1, which makes SQLite create no -wal or -shm beside it (nothing
// can be in a -wal that does not exist).
func Inspect(ctx context.Context, path string, f *os.File) (missing []Object, err error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("cannot open database %s: %w", path, err)
	}
	_, walErr := os.Stat(path + "-wal")
	_, journalErr := os.Stat(path + "-journal")
	switch {
	case fi.Size() == 0 && walErr != nil:
		return nil, nil // a new database: the migrations create everything
	case fi.Size() > 0:
		// An empty file with a -wal is a database whose pages are all in
		// the -wal still; any other file starts with SQLite's header.
		hdr := make([]byte, 100)
		if n, _ := f.ReadAt(hdr, 0); n < len(hdr) || !bytes.HasPrefix(hdr, []byte("SQLite format 3\x00")) {
			return nil, fmt.Errorf("cannot open database %s: not an SQLite database (no SQLite header)", path)
		}
	}
	params := "mode=ro&immutable=1"
	if walErr == nil || journalErr == nil {
		params = "mode=ro" // what is in the -wal or -journal counts
	}
	ro := OpenRaw("file:" + (&url.URL{Path: path}).EscapedPath() + "?" + params)
	defer ro.Close() // SQLite's own descriptors: closing them keeps f's flock
	ro.SetMaxOpenConns(1)
	var version int
	if err := ro.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return nil, fmt.Errorf("cannot open database %s: %w", path, err)
	}
	if version > len(migrations) {
		return nil, fmt.Errorf("cannot open database %s: schema version %d is newer than this worker's %d: run a newer worker, or point database.path at another file", path, version, len(migrations))
	}
	have, err := readSchema(ctx, ro)
	if err != nil {
		return nil, fmt.Errorf("cannot open database %s: %w", path, err)
	}
	if version < len(migrations) {
		// The next migration creates what a later version has: anything of
		// that name already there is someone else's.
		later, err := expectedSchema(ctx, len(migrations))
		if err != nil {
			return nil, err
		}
		done, err := expectedSchema(ctx, version)
		if err != nil {
			return nil, err
		}
		for _, o := range have {
			if slices.ContainsFunc(later, func(l Object) bool { return l.name == o.name }) &&
				!slices.ContainsFunc(done, func(d Object) bool { return d.name == o.name }) {
				w := later[slices.IndexFunc(later, func(l Object) bool { return l.name == o.name })]
				if _, err := diffSchema([]Object{o}, []Object{w}); err != nil {
					return nil, fmt.Errorf("cannot open database %s: %w: %s", path, err, notWorkerRemedy)
				}
				return nil, fmt.Errorf("cannot open database %s: %s %s exists, but user_version %d says the worker never created it: %s", path, o.typ, o.name, version, notWorkerRemedy)
			}
		}
	}
	want, err := expectedSchema(ctx, version)
	if err != nil {
		return nil, err
	}
	missing, err = diffSchema(have, want)
	if err != nil {
		return nil, fmt.Errorf("cannot open database %s: %w: %s", path, err, notWorkerRemedy)
	}
	return missing, nil
}

// Repair creates the objects of missing that d does not have, in one
// transaction, and returns the names it created. Another process may have
// created them meanwhile: each is checked again inside the transaction.
func Repair(ctx context.Context, d *sql.DB, missing []Object) ([]string, error) {
	if len(missing) == 0 {
		return nil, nil
	}
	tx, err := d.BeginTx(ctx, nil) // BEGIN IMMEDIATE
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	var created []string
	for _, o := range missing {
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE name = ?", o.name).Scan(&n); err != nil {
			return nil, err
		}
		if n > 0 {
			continue
		}
		if _, err := tx.ExecContext(ctx, o.sql); err != nil {
			return nil, fmt.Errorf("cannot create %s %s: %w", o.typ, o.name, err)
		}
		created = append(created, o.name)
	}
	return created, tx.Commit()
}

// Check is the cheap check Verify runs before every heartbeat: one
// query of sqlite_schema for the names of the worker's objects. It returns
// those that are missing.
func Check(ctx context.Context, d *sql.DB) ([]Object, error) {
	want, err := expectedSchema(ctx, len(migrations))
	if err != nil {
		return nil, err
	}
	names, err := strings1(ctx, d, `SELECT name FROM sqlite_schema WHERE name IN (SELECT value FROM json_each(?))`, schemaNames(want))
	if err != nil {
		return nil, err
	}
	var missing []Object
	for _, w := range want {
		if !slices.Contains(names, w.name) {
			missing = append(missing, w)
		}
	}
	return missing, nil
}

// schemaNames returns the names of objs as a JSON array.
func schemaNames(objs []Object) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, o := range objs {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q", o.name)
	}
	b.WriteByte(']')
	return b.String()
}
