// Package regularfile reads the files an operator names to the worker (the
// config file, the PostgreSQL password file) so that a wrong one cannot
// hang it or take its memory: only a regular file is read, it is opened
// without blocking, and never more than a bound is read. A FIFO blocks
// open(2) until a writer comes, and /dev/zero or /dev/urandom never end.
package regularfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// ErrNotRegular is the error of a path that is not a regular file (after
// symbolic links): a FIFO, a device, a socket or a directory.
var ErrNotRegular = errors.New("not a regular file")

// Read returns the first max bytes of the regular file at path, or all of
// it when it is shorter; a caller that must tell a longer file apart asks
// for one byte more than it accepts. The type is checked before the open,
// which does not block (O_NONBLOCK: a FIFO put in its place meanwhile opens
// at once), and again on the open file, so a FIFO or a device is refused
// without a read. Errors name the path.
func Read(path string, max int64) ([]byte, error) {
	// A Stat that fails (no such file, no permission) leaves the error to
	// the open, whose message is the one operators know.
	if fi, err := os.Stat(path); err == nil {
		if err := regular(path, fi); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := regular(path, fi); err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(f, max))
}

// regular returns an error wrapping ErrNotRegular, saying what path is,
// unless fi is a regular file's.
func regular(path string, fi fs.FileInfo) error {
	if m := fi.Mode(); !m.IsRegular() {
		return &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w: a %s", ErrNotRegular, Kind(m))}
	}
	return nil
}

// Kind names the type of a file that is not a regular file: "directory",
// "named pipe", "socket", "character device", "block device". The config,
// the password file and the database (internal/db) all say it this way.
func Kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	}
	return "special file (mode " + m.String() + ")"
}
