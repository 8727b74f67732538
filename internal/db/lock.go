package db

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sqlworker/worker/internal/regularfile"
)

// lockDatabase opens the database file at path, creating it empty when it
// does not exist, and takes an exclusive flock on that descriptor. The lock
// belongs to the file, not to its name: every path that reaches it (a
// symlink, a hard link, a bind mount, "..") opens the same inode and
// collides. On Linux, flock locks are independent of the fcntl locks SQLite
// takes on the same file, so the two never interfere.
//
// The descriptor must outlive every SQLite connection to the file: closing
// any descriptor of a file drops the process's fcntl locks on it, which are
// SQLite's. That is why the connector owns it once the pool is open and
// closes it only after its last connection (see connector.release).
//
// Nothing is created or written before the checks pass: a path that is not
// a regular file (a FIFO, /dev/null, a directory) is refused after one stat,
// before any open that could block or create a file beside it. No lock file
// is written either: the holder's pid comes from /proc/locks, which is always
// current, where a pid file can be stale and would be one more file left
// beside a refused path.
func lockDatabase(path string) (*os.File, fileID, error) {
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, fileID{}, fmt.Errorf("cannot open database %s: not a regular file (%s)", path, regularfile.Kind(fi.Mode()))
	}
	// O_NONBLOCK: should a FIFO appear at the path after the stat, opening it
	// does not wait for a writer; the fstat below refuses it.
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fileID{}, fmt.Errorf("cannot open database %s: %w", path, errors.Unwrap(err))
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fileID{}, fmt.Errorf("cannot open database %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return nil, fileID{}, fmt.Errorf("cannot open database %s: not a regular file", path)
	}
	id := fileID{dev: st.Dev, ino: st.Ino}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close() // no SQLite connection to the file is open in this process yet
		if errors.Is(err, unix.EWOULDBLOCK) {
			holder := "held by another process"
			if pid := flockHolder(id); pid > 0 {
				holder = "pid " + strconv.Itoa(pid)
			}
			return nil, fileID{}, fmt.Errorf("%w: %s is locked (%s)", ErrLocked, path, holder)
		}
		return nil, fileID{}, fmt.Errorf("cannot lock database %s: %w", path, err)
	}
	return f, id, nil
}

// flockHolder returns the pid that holds a FLOCK write lock on the file id,
// read from /proc/locks, or 0 when it cannot tell. A line reads
//
//	1: FLOCK  ADVISORY  WRITE 4242 08:01:1234567 0 EOF
//
// with the device as hex major:minor. Some file systems (overlayfs, btrfs)
// report another device there than stat does, so when no line matches both,
// a single line matching the inode is taken.
func flockHolder(id fileID) int {
	f, err := os.Open("/proc/locks")
	if err != nil {
		return 0
	}
	defer f.Close()
	dev := fmt.Sprintf("%02x:%02x:%d", unix.Major(id.dev), unix.Minor(id.dev), id.ino)
	ino := ":" + strconv.FormatUint(id.ino, 10)
	var byInode []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" || fields[3] != "WRITE" {
			continue // "->" lines are waiters, not holders
		}
		pid, err := strconv.Atoi(fields[4])
		if err != nil {
			continue
		}
		if fields[5] == dev {
			return pid
		}
		if strings.HasSuffix(fields[5], ino) {
			byInode = append(byInode, pid)
		}
	}
	if len(byInode) == 1 {
		return byInode[0]
	}
	return 0
}

// checkDir refuses a database path whose directory is missing or is not a
// directory, naming it.
func checkDir(path string) error {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("cannot open database %s: directory %s: %w", path, dir, errors.Unwrap(err))
	}
	if !fi.IsDir() {
		return fmt.Errorf("cannot open database %s: %s is not a directory", path, dir)
	}
	return nil
}
