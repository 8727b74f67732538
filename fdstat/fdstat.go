package fdstat

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Type is what a file descriptor points to.
type Type int

// The types, in the order Types returns them.
const (
	SQLite    Type = iota // the database file and its -wal, -shm and -journal
	Socket                // socket:[inode]
	Pipe                  // pipe:[inode]
	AnonInode             // anon_inode:[eventpoll], [eventfd], [timerfd], ...
	File                  // any other path: files, directories, devices
	Other                 // anything else the kernel reports
	numTypes
)

// Types returns every Type, in label order; the slice is the caller's.
func Types() []Type { return []Type{SQLite, Socket, Pipe, AnonInode, File, Other} }

var typeNames = [numTypes]string{"sqlite", "socket", "pipe", "anon_inode", "file", "other"}

// String returns the type's label value, or Type(n) for a value that is no
// Type of this package.
func (t Type) String() string {
	if t < 0 || t >= numTypes {
		return "Type(" + strconv.Itoa(int(t)) + ")"
	}
	return typeNames[t]
}

// Counts holds the number of descriptors of each Type. The zero value
// counts none; Counts are comparable with ==.
type Counts struct {
	n [numTypes]int
}

// Get returns the number of descriptors of type t; 0 for a value that is
// no Type of this package.
func (c Counts) Get(t Type) int {
	if t < 0 || t >= numTypes {
		return 0
	}
	return c.n[t]
}

// Total returns the number of descriptors of all types.
func (c Counts) Total() int {
	n := 0
	for _, v := range c.n {
		n += v
	}
	return n
}

// sqliteSuffixes are the files SQLite keeps beside a database.
var sqliteSuffixes = []string{"", "-wal", "-shm", "-journal"}

// Counter counts the descriptors of one process. It is safe for concurrent
// use. It keeps one descriptor of the fd directory open from NewCounter
// (or its first successful Count) until Close, and rewinds it for each
// Count.
type Counter struct {
	dir    string          // /proc/<pid>/fd
	dirz   []byte          // dir, NUL-terminated for openat
	self   bool            // dir is this process's: leave out a Count's own transient descriptor
	proc   bool            // dir is in procfs, whose short reads end the directory
	sqlite map[string]bool // absolute paths classed as SQLite
	held   *heldDir
}

// heldDir is the descriptor of the fd directory that a Counter keeps open
// between counts, which spares an openat and a close per Count. It is apart
// from the Counter so that a cleanup can close it once the Counter is
// unreachable, for callers that never call Close.
type heldDir struct {
	mu     sync.Mutex // held for a whole Count on fd
	fd     int        // -1 when not open
	closed bool
}

func (h *heldDir) close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	return h.dropLocked()
}

func (h *heldDir) dropLocked() error {
	if h.fd < 0 {
		return nil
	}
	err := unix.Close(h.fd)
	h.fd = -1
	return err
}

// NewCounter returns a Counter for the current process that classes the given
// database files (and their -wal, -shm and -journal) as SQLite. The Counter
// holds a descriptor of /proc/self/fd until Close, or until it is garbage
// collected.
func NewCounter(dbPaths ...string) *Counter {
	return NewCounterFor("/proc/self/fd", dbPaths...)
}

// NewCounterFor is NewCounter for any fd directory, such as /proc/1234/fd.
func NewCounterFor(dir string, dbPaths ...string) *Counter {
	c := &Counter{dir: dir, dirz: append([]byte(dir), 0), sqlite: make(map[string]bool), held: &heldDir{fd: -1}}
	// Opened now, so that it is there when process_open_fds is read at
	// the first scrape too; a failure is Count's to report.
	if fd, err := openDir(c.dirz); err == nil {
		c.held.fd = fd
	}
	runtime.AddCleanup(c, func(h *heldDir) { _ = h.close() }, c.held)
	c.proc = strings.HasPrefix(filepath.Clean(dir), "/proc/")
	switch filepath.Clean(dir) {
	case "/proc/self/fd", "/proc/thread-self/fd", "/proc/" + strconv.Itoa(os.Getpid()) + "/fd":
		c.self = true
	}
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

// buffers are reused across calls of Count, which then allocates nothing.
type buffers struct {
	dents [16 << 10]byte     // getdents64 records
	link  [unix.PathMax]byte // a readlink target
}

var pool = sync.Pool{New: func() any { return new(buffers) }}

// Offsets in a linux_dirent64 record: d_ino u64, d_off s64, d_reclen u16,
// d_type u8, then the NUL-terminated d_name.
const (
	direntReclen = 16
	direntName   = 19
	// direntMax bounds a record: the header, a name of NAME_MAX (255)
	// bytes and its NUL, aligned to 8.
	direntMax = (direntName + 256 + 7) &^ 7
)

// Count reads the fd directory once and classifies every descriptor. The
// Counter's own descriptor of the directory, open between counts, is
// counted (as file), because the process holds it: the total matches
// process_open_fds. A descriptor that Count opens only for itself (after
// Close, or while another Count reads the kept one) is left out.
//
// It allocates nothing and makes one readlinkat per descriptor: the
// directory is read with getdents64 into a reused buffer and each name,
// already NUL-terminated there, is passed to readlinkat in place. Besides,
// it makes one lseek to rewind the kept descriptor and one getdents64 per 16 KiB of directory (about 600
// descriptors).
func (c *Counter) Count() (Counts, error) {
	if h := c.held; h.mu.TryLock() {
		if !h.closed {
			defer h.mu.Unlock()
			return c.countHeld(h)
		}
		h.mu.Unlock()
	}
	// Closed, or busy with another Count: a descriptor of this Count's own.
	dfd, err := openDir(c.dirz)
	if err != nil {
		return Counts{}, fmt.Errorf("cannot open %s: %w", c.dir, err)
	}
	defer unix.Close(dfd)
	return c.count(dfd, true)
}

// countHeld counts on the kept descriptor, opening it when it is not open
// and rewinding it otherwise; h.mu is held. After an error it drops the descriptor,
// so that the next Count opens the directory afresh.
func (c *Counter) countHeld(h *heldDir) (Counts, error) {
	if h.fd < 0 {
		fd, err := openDir(c.dirz)
		if err != nil {
			return Counts{}, fmt.Errorf("cannot open %s: %w", c.dir, err)
		}
		h.fd = fd
	} else if _, err := unix.Seek(h.fd, 0, io.SeekStart); err != nil {
		_ = h.dropLocked()
		return Counts{}, fmt.Errorf("cannot rewind %s: %w", c.dir, err)
	}
	counts, err := c.count(h.fd, false)
	if err != nil {
		_ = h.dropLocked()
	}
	return counts, err
}

// Close closes the descriptor of the fd directory that the Counter keeps
// between counts. Count still works after Close, opening the directory
// each time. Close is safe to call twice.
func (c *Counter) Close() error {
	if err := c.held.close(); err != nil {
		return fmt.Errorf("cannot close %s: %w", c.dir, err)
	}
	return nil
}

// count reads the directory from dfd, at its start, and classifies every
// descriptor; skipSelf leaves dfd out of the counts.
func (c *Counter) count(dfd int, skipSelf bool) (Counts, error) {
	var counts Counts
	var selfBuf [20]byte
	var self []byte // the name of dfd, in this process's directory only
	if c.self && skipSelf {
		self = strconv.AppendInt(selfBuf[:0], int64(dfd), 10)
	}
	b := pool.Get().(*buffers)
	defer pool.Put(b)
	for {
		n, err := unix.Getdents(dfd, b.dents[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return Counts{}, fmt.Errorf("cannot read %s: %w", c.dir, err)
		}
		if n <= 0 {
			return counts, nil
		}
		// procfs fills the buffer until the directory ends, so a read
		// that left room for another record was the last: the getdents64
		// that would return 0 is spared.
		last := c.proc && n <= len(b.dents)-direntMax
		for off := 0; off < n; {
			rec := b.dents[off:n]
			reclen := int(binary.NativeEndian.Uint16(rec[direntReclen:]))
			if reclen < direntName+1 || reclen > len(rec) {
				return Counts{}, fmt.Errorf("cannot read %s: malformed directory entry", c.dir)
			}
			off += reclen
			name := rec[direntName:reclen] // the name, its NUL, padding
			end := bytes.IndexByte(name, 0)
			if end <= 0 || isDot(name[:end]) || (self != nil && bytes.Equal(name[:end], self)) {
				continue
			}
			target, errno := readlinkat(dfd, &name[0], b.link[:])
			switch {
			case errno == unix.ENOENT:
				// closed since the directory was read
			case errno != 0:
				counts.n[Other]++
			default:
				counts.n[c.classify(target)]++
			}
		}
		if last {
			return counts, nil
		}
	}
}

var atFDCWD = unix.AT_FDCWD // a variable: the constant -100 does not convert to uintptr

// openDir is unix.Open of a directory whose NUL-terminated name is given,
// which spares the conversion (and allocation) of a Go string.
func openDir(name []byte) (int, error) {
	if bytes.IndexByte(name, 0) != len(name)-1 {
		return -1, unix.EINVAL // a NUL inside the name
	}
	for {
		fd, _, errno := unix.Syscall6(unix.SYS_OPENAT, uintptr(atFDCWD), uintptr(unsafe.Pointer(&name[0])),
			uintptr(unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC), 0, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return -1, errno
		}
		return int(fd), nil
	}
}

// readlinkat is unix.Readlinkat for a name that is already NUL-terminated,
// which spares its conversion of the name to a C string.
func readlinkat(dfd int, name *byte, buf []byte) ([]byte, unix.Errno) {
	for {
		n, _, errno := unix.Syscall6(unix.SYS_READLINKAT, uintptr(dfd), uintptr(unsafe.Pointer(name)),
			uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return nil, errno
		}
		return buf[:n], 0
	}
}

func isDot(name []byte) bool {
	return len(name) <= 2 && name[0] == '.' && (len(name) == 1 || name[1] == '.')
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
