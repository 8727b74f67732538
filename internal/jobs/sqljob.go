package jobs

import (
	"context"
	"database/sql"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/sqlworker/worker/internal/sqlstmt"
)

// sqlJob is a user job's SQL on SQLite. After its first successful run on a
// handle, its statements are split (sqlstmt, SQLite's own parser) and
// prepared on that handle, so that later runs neither split nor parse them
// again. Until then, and for good once they failed to prepare
// maxPrepareTries times (a statement naming a temporary table the job
// creates), the text runs as written.
//
// Each prepared statement runs as go-sqlite3 runs a statement of a text:
// stepped once. A statement that returns rows runs through Query, and its
// rows are closed at once, which resets it: one that stepped to a row and
// was left so (as Exec leaves it) keeps its pooled connection in a read
// transaction, and wal_checkpoint(TRUNCATE) and DDL on that connection then
// fail with "database table is locked" (d0b9719, reverted in 0f21e42). One
// that returns no rows runs to SQLITE_DONE, which leaves it idle, so it
// runs through Exec, which is cheaper (no Rows); which it is, its first
// prepared run tells (Rows.Columns).
type sqlJob struct {
	query string
	p     *preparedStmts
}

// preparedStmts are a sqlJob's statements on one handle. They are apart
// from the sqlJob so that a cleanup can close them once the job is
// unreachable (a reload that dropped or replaced it).
type preparedStmts struct {
	mu       sync.Mutex
	db       *sql.DB     // the handle stmts are prepared on
	stmts    []*sql.Stmt // the job's statements, then SELECT total_changes()
	kinds    []stmtKind  // of stmts, learnt on their first prepared run
	failures int         // of prepare
	closed   bool
}

const maxPrepareTries = 3

// stmtKind is whether a prepared statement returns rows, once known.
type stmtKind = atomic.Int32

const (
	kindUnknown int32 = iota // run through Query until known
	kindNoRows               // no columns: Exec runs it to SQLITE_DONE
	kindRows                 // Query, and its rows closed at once
)

func newSQLJob(query string) *sqlJob {
	j := &sqlJob{query: query, p: &preparedStmts{}}
	runtime.AddCleanup(j, func(p *preparedStmts) { p.close() }, j.p)
	return j
}

func (p *preparedStmts) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.dropLocked()
}

func (p *preparedStmts) dropLocked() {
	for _, st := range p.stmts {
		_ = st.Close()
	}
	p.db, p.stmts, p.kinds = nil, nil, nil
}

func (j *sqlJob) run(ctx context.Context, db *sql.DB) (int64, error) {
	j.p.mu.Lock()
	stmts, kinds := j.p.stmts, j.p.kinds
	if j.p.db != db {
		stmts = nil
	}
	j.p.mu.Unlock()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	var n int64
	if stmts == nil {
		n, err = execText(ctx, tx, j.query)
	} else {
		n, err = execPrepared(ctx, tx, stmts, kinds)
	}
	if err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return n, err
	}
	if stmts == nil {
		j.prepare(ctx, db) // with no connection held: it takes one of the pool's
	}
	return n, nil
}

// execText runs query, statement after statement as the driver splits it.
// Exec reports only the last statement's changes; total_changes() counts
// all of them on this connection.
func execText(ctx context.Context, tx *sql.Tx, query string) (int64, error) {
	var before, after int64
	if err := tx.QueryRowContext(ctx, "SELECT total_changes()").Scan(&before); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, query); err != nil {
		return 0, err
	}
	if err := tx.QueryRowContext(ctx, "SELECT total_changes()").Scan(&after); err != nil {
		return 0, err
	}
	return after - before, nil
}

// execPrepared is execText with the statements prepared, total_changes()
// last.
func execPrepared(ctx context.Context, tx *sql.Tx, stmts []*sql.Stmt, kinds []stmtKind) (int64, error) {
	changes := tx.StmtContext(ctx, stmts[len(stmts)-1])
	var before, after int64
	if err := changes.QueryRowContext(ctx).Scan(&before); err != nil {
		return 0, err
	}
	for i, st := range stmts[:len(stmts)-1] {
		if err := stepOnce(ctx, tx.StmtContext(ctx, st), &kinds[i]); err != nil {
			return 0, err
		}
	}
	if err := changes.QueryRowContext(ctx).Scan(&after); err != nil {
		return 0, err
	}
	return after - before, nil
}

// stepOnce runs st as Exec of its text would, one step, and leaves it idle:
// through Exec when it returns no rows (it runs to SQLITE_DONE), else
// through Query with its rows closed at once, which resets it. kind says
// which, once a Query has told.
func stepOnce(ctx context.Context, st *sql.Stmt, kind *stmtKind) error {
	if kind.Load() == kindNoRows {
		_, err := st.ExecContext(ctx)
		return err
	}
	rows, err := st.QueryContext(ctx)
	if err != nil {
		return err
	}
	if kind.Load() == kindUnknown {
		if cols, err := rows.Columns(); err == nil {
			k := kindRows
			if len(cols) == 0 {
				k = kindNoRows
			}
			kind.Store(k)
		}
	}
	rows.Next()
	return errors.Join(rows.Err(), rows.Close())
}

// prepare splits the job's SQL and prepares its statements on db, unless
// they are prepared there or cannot be.
func (j *sqlJob) prepare(ctx context.Context, db *sql.DB) {
	p := j.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.failures >= maxPrepareTries || p.db == db {
		return
	}
	p.dropLocked()
	parser, err := sqlstmt.Open()
	if err != nil {
		p.failures++
		return
	}
	split, err := parser.Split(j.query)
	_ = parser.Close()
	if err != nil || len(split) == 0 {
		p.failures = maxPrepareTries
		return
	}
	stmts := make([]*sql.Stmt, 0, len(split)+1)
	for _, s := range append(split, sqlstmt.Statement{Text: "SELECT total_changes()"}) {
		st, err := db.PrepareContext(ctx, s.Text)
		if err != nil {
			for _, st := range stmts {
				_ = st.Close()
			}
			p.failures++
			return
		}
		stmts = append(stmts, st)
	}
	p.db, p.stmts, p.kinds = db, stmts, make([]stmtKind, len(stmts))
}
