package db

/*
// The declaration of sqlite3.h this file uses; the definition is in the
// SQLite that go-sqlite3 links into the binary (as in package sqlstmt).
typedef struct sqlite3 sqlite3;
extern int sqlite3_db_config(sqlite3 *db, int op, ...);

enum { DBCONFIG_NO_CKPT_ON_CLOSE = 1006 };

// no_ckpt_on_close sets SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE and returns the
// setting afterwards (0 or 1), or -1 when SQLite refused it.
static int no_ckpt_on_close(void *db, int on) {
	int now = -1;
	if (sqlite3_db_config((sqlite3 *)db, DBCONFIG_NO_CKPT_ON_CLOSE, on, &now) != 0) {
		return -1;
	}
	return now;
}
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/mattn/go-sqlite3"
)

// Checkpoint modes of Config.Checkpoint: who checkpoints the WAL.
const (
	// CheckpointWorker: the worker does, as SQLite applications do. SQLite
	// runs its automatic PASSIVE checkpoints (wal_autocheckpoint, 1000
	// pages), Close runs wal_checkpoint(TRUNCATE), and the last connection
	// to close checkpoints and removes the -wal. The default.
	CheckpointWorker = "worker"
	// CheckpointExternal: another process does, such as Litestream, which
	// must own checkpointing: a checkpoint outside its control makes it
	// lose its place in the WAL and start a new generation. The worker then
	// never checkpoints: every connection has wal_autocheckpoint off and
	// SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE on, and Close runs no checkpoint, so
	// the -wal and -shm stay behind with their frames. Only the recovery
	// from a removed -wal still checkpoints (see Handle.Verify): the frames
	// are then in no file any more but the open connections', and whoever
	// replicated the WAL has lost its place in it anyway.
	CheckpointExternal = "external"
)

// DefaultCheckpoint is the checkpoint mode of a Config that names none.
const DefaultCheckpoint = CheckpointWorker

// ErrCheckpointMode is the error of a Config.Checkpoint that is not a mode.
var ErrCheckpointMode = errors.New("unknown checkpoint mode")

// checkCheckpointMode returns an error unless mode is a checkpoint mode or
// "" (DefaultCheckpoint).
func checkCheckpointMode(mode string) error {
	switch mode {
	case "", CheckpointWorker, CheckpointExternal:
		return nil
	}
	return fmt.Errorf("%w %q: want %q or %q", ErrCheckpointMode, mode, CheckpointWorker, CheckpointExternal)
}

// noCheckpoints makes a connection never checkpoint: no automatic
// checkpoint after a commit, and none when it is the last to close.
func noCheckpoints(ctx context.Context, c *sqlite3.SQLiteConn) error {
	if _, err := c.ExecContext(ctx, "PRAGMA wal_autocheckpoint = 0", nil); err != nil {
		return fmt.Errorf("cannot turn wal_autocheckpoint off: %w", err)
	}
	return setNoCkptOnClose(c, true)
}

// setNoCkptOnClose sets SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE on a connection.
// go-sqlite3 has no sqlite3_db_config, so the sqlite3 pointer is read from
// its connection's field db, by name: should a new go-sqlite3 rename it,
// every connection fails to open here, loudly, rather than checkpoint.
func setNoCkptOnClose(c *sqlite3.SQLiteConn, on bool) error {
	f := reflect.ValueOf(c).Elem().FieldByName("db")
	if !f.IsValid() || f.Kind() != reflect.Pointer || f.IsNil() {
		return errors.New("cannot set SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE: go-sqlite3's connection has no sqlite3 pointer named db")
	}
	arg := C.int(0)
	if on {
		arg = 1
	}
	if got := C.no_ckpt_on_close(f.UnsafePointer(), arg); got != arg {
		return fmt.Errorf("cannot set SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE to %d: SQLite answered %d", arg, got)
	}
	return nil
}
