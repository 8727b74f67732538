// Package fdstat counts a process's open file descriptors by what they point
// to, read from /proc/<pid>/fd, so that a leak shows its kind: SQLite files,
// sockets, pipes or plain files.
package fdstat

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Type is what a file descriptor points to.
type Type int

// The types, in the order of Types.
const (
	SQLite    Type = iota // the database file and its -wal, -shm and -journal
	Socket                // socket:[inode]
	Pipe                  // pipe:[inode]
	AnonInode             // anon_inode:[eventpoll], [eventfd], [timerfd], ...
	File                  // any other path: files, directories, devices
	Other                 // anything else the kernel reports
	numTypes
)

// Types lists every Type, in label order.
var Types = []Type{SQLite, Socket, Pipe, AnonInode, File, Other}

var typeNames = [numTypes]string{"sqlite", "socket", "pipe", "anon_inode", "file", "other"}

// String returns the type's label value.
func (t Type) String() string { return typeNames[t] }

// Counts holds the number of descriptors of each Type.
type Counts [numTypes]int

// Total returns the number of descriptors of all types.
func (c Counts) Total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

// sqliteSuffixes are the files SQLite keeps beside a database.
var sqliteSuffixes = []string{"", "-wal", "-shm", "-journal"}

// Counter counts the descriptors of one process. It is safe for concurrent use.
type Counter struct {
	dir    string          // /proc/<pid>/fd
	sqlite map[string]bool // absolute paths classed as SQLite
}

// NewCounter returns a Counter for the current process that classes the given
// database files (and their -wal, -shm and -journal) as SQLite.
func NewCounter(dbPaths ...string) *Counter {
	return NewCounterFor("/proc/self/fd", dbPaths...)
}

// NewCounterFor is NewCounter for any fd directory, such as /proc/1234/fd.
func NewCounterFor(dir string, dbPaths ...string) *Counter {
	c := &Counter{dir: dir, sqlite: make(map[string]bool)}
	for _, p := range dbPaths {
		for _, abs := range resolve(p) {
			for _, s := range sqliteSuffixes {
				c.sqlite[abs+s] = true
			}
		}
	}
	return c
}

// resolve returns the absolute path of p, and its path with symlinks in the
// directory resolved, which is what /proc reports.
func resolve(p string) []string {
	abs, err := filepath.Abs(p)
	if err != nil {
		return []string{p}
	}
	out := []string{abs}
	dir, base := splitPath(abs)
	if real, err := filepath.EvalSymlinks(dir); err == nil && real != dir {
		out = append(out, real+"/"+base)
	}
	return out
}

// Count reads the fd directory once and classifies every descriptor. The
// descriptor Count itself uses to read the directory is left out, so that
// the total matches process_open_fds.
func (c *Counter) Count() (Counts, error) {
	var counts Counts
	dfd, err := unix.Open(c.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return counts, fmt.Errorf("cannot open %s: %w", c.dir, err)
	}
	f := os.NewFile(uintptr(dfd), c.dir)
	defer f.Close()
	self := strconv.Itoa(dfd)

	names, err := f.Readdirnames(-1)
	if err != nil {
		return counts, fmt.Errorf("cannot read %s: %w", c.dir, err)
	}
	var buf [unix.PathMax]byte
	for _, name := range names {
		if name == self {
			continue
		}
		n, err := unix.Readlinkat(dfd, name, buf[:])
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // closed since the directory was read
			}
			counts[Other]++
			continue
		}
		counts[c.classify(buf[:n])]++
	}
	return counts, nil
}

func (c *Counter) classify(target []byte) Type {
	switch {
	case len(target) > 0 && target[0] == '/':
		// The map lookup with a converted []byte key does not allocate.
		if c.sqlite[string(target)] {
			return SQLite
		}
		return File
	case hasPrefix(target, "socket:"):
		return Socket
	case hasPrefix(target, "pipe:"):
		return Pipe
	case hasPrefix(target, "anon_inode:"):
		return AnonInode
	}
	return Other
}

func hasPrefix(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == prefix
}

func splitPath(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/')
	return p[:i], p[i+1:]
}
