package db

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// walGuard watches the -wal and -shm of an open database. SQLite keeps
// using the -wal and -shm it opened when they are unlinked or renamed over:
// the open connections stay consistent, but a connection opened afterwards
// makes a new -wal at the path, reads pages through an index of frames that
// are not in it, and the next checkpoint writes garbage into the database
// ("database disk image is malformed", measured). A new -shm lets another
// process build a second index of the same -wal.
//
// The guard records the identities of both files when a first connection
// opens (SQLite removes them when the last one closes, so that is the only
// moment they may change), and compares them while a connection is open.
// Once they differ, it fences the connector: no new connection is made, and
// the Handle recovers through the connections still open.
type walGuard struct {
	path string // of the database

	mu   sync.Mutex
	base walFiles // recorded at the first connection; zero when absent then

	fence atomic.Pointer[error] // set once a change was seen
}

// walFiles are the identities of a database's -wal and -shm.
type walFiles struct{ wal, shm fileID }

func (g *walGuard) stat() walFiles {
	var w walFiles
	w.wal, _ = statID(g.path + "-wal")
	w.shm, _ = statID(g.path + "-shm")
	return w
}

// record notes the files at the paths now.
func (g *walGuard) record() {
	w := g.stat()
	g.mu.Lock()
	g.base = w
	g.mu.Unlock()
}

// check returns an ErrWALChanged error when a file recorded is gone or
// another file is at its path now. A file that was absent when recorded is
// recorded when first seen (SQLite may create it after the connection
// opened). It does two stats, and changes nothing but that record.
func (g *walGuard) check() error {
	if err := g.fenced(); err != nil {
		return err
	}
	for _, f := range []struct {
		suffix string
		base   *fileID
	}{{"-wal", &g.base.wal}, {"-shm", &g.base.shm}} {
		path := g.path + f.suffix
		id, err := statID(path)
		g.mu.Lock()
		base := *f.base
		if base == (fileID{}) && err == nil {
			*f.base = id
			base = id
		}
		g.mu.Unlock()
		switch {
		case base == (fileID{}):
		case errors.Is(err, unix.ENOENT):
			return fmt.Errorf("%w: %s: %w", ErrWALChanged, path, unix.ENOENT)
		case err != nil:
			// Cannot tell (EACCES on the directory, say): not proof of a change.
		case id != base:
			return fmt.Errorf("%w: %s is another file now", ErrWALChanged, path)
		}
	}
	return nil
}

// fenced returns the change that fenced the connector, or nil.
func (g *walGuard) fenced() error {
	if p := g.fence.Load(); p != nil {
		return *p
	}
	return nil
}

// setFence fences the connector with err, once; it reports whether this
// call did.
func (g *walGuard) setFence(err error) bool { return g.fence.CompareAndSwap(nil, &err) }
