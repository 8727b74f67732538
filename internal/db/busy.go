package db

import (
	"errors"

	"github.com/mattn/go-sqlite3"
)

// IsBusy reports whether err is SQLite saying that another connection holds
// the lock it needed, for longer than the busy timeout (SQLITE_BUSY), or
// that a table is locked within the connection's shared cache
// (SQLITE_LOCKED). Both pass when the holder lets go, so a retry can succeed
// where the first attempt failed.
func IsBusy(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && (se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked)
}
