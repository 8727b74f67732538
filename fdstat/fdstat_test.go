package fdstat

import (
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	_ "github.com/mattn/go-sqlite3"
	"github.com/prometheus/procfs"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/sqlworker/worker/internal/floorbench"
)

func TestMain(m *testing.M) {
	// The Go runtime opens its network poller (an epoll and an eventfd,
	// both anon_inode) the first time a pipe or socket is used. Do it now,
	// so that it is in every baseline rather than in a test's delta.
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	r.Close()
	w.Close()
	goleak.VerifyTestMain(m)
}

// newCounter is NewCounter, closed when t ends: a Counter left to the
// garbage collector closes its descriptor at a moment no test chooses, in
// the middle of another test's counts.
func newCounter(t testing.TB, dbPaths ...string) *Counter {
	c := NewCounter(dbPaths...)
	t.Cleanup(func() { c.Close() })
	return c
}

// newCounterFor is NewCounterFor, closed when t ends.
func newCounterFor(t testing.TB, dir string, dbPaths ...string) *Counter {
	c := NewCounterFor(dir, dbPaths...)
	t.Cleanup(func() { c.Close() })
	return c
}

// delta returns the counts now minus base.
func delta(t testing.TB, c *Counter, base Counts) Counts {
	t.Helper()
	now, err := c.Count()
	if err != nil {
		t.Fatalf("Count: %v", err)
	}
	for i := range now.n {
		now.n[i] -= base.n[i]
	}
	return now
}

func count(t testing.TB, c *Counter) Counts {
	t.Helper()
	n, err := c.Count()
	if err != nil {
		t.Fatalf("Count: %v", err)
	}
	return n
}

// counts builds a Counts from type: n pairs.
func counts(kv map[Type]int) Counts {
	var c Counts
	for t, n := range kv {
		c.n[t] = n
	}
	return c
}

func (c Counts) String() string {
	var parts []string
	for _, t := range Types() {
		parts = append(parts, fmt.Sprintf("%s=%d", t, c.Get(t)))
	}
	return strings.Join(parts, " ")
}

// openSQLite opens a WAL database at path through database/sql and writes
// to it, so that its connection holds the database, -wal and -shm open.
func openSQLite(t *testing.T, path string) *sql.DB {
	t.Helper()
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?_journal_mode=WAL&_busy_timeout=5000"
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		t.Fatalf("sql.Open: %v", err)
	}
	db.SetMaxOpenConns(1)
	for _, q := range []string{
		"CREATE TABLE IF NOT EXISTS t (x INTEGER)",
		"INSERT INTO t VALUES (1)",
	} {
		if _, err := db.Exec(q); err != nil {
			db.Close()
			t.Fatalf("%s: %v", q, err)
		}
	}
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		db.Close()
		t.Fatalf("journal_mode: got %q (%v), want wal", mode, err)
	}
	return db
}

func TestCounter_Count(t *testing.T) {
	dir := t.TempDir()
	realDir := filepath.Join(dir, "real")
	if err := os.Mkdir(realDir, 0o755); err != nil {
		t.Fatal(err)
	}
	linkDir := filepath.Join(dir, "link")
	if err := os.Symlink(realDir, linkDir); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(realDir, "worker.db")
	viaLink := filepath.Join(linkDir, "linked.db")

	// The counter knows both databases by the paths the worker is given.
	c := newCounter(t, dbPath, viaLink)

	t.Run("SQLiteWAL", func(t *testing.T) {
		base := count(t, c)
		db := openSQLite(t, dbPath)
		// One connection: the database and its -wal, plus the -shm.
		if got, want := delta(t, c, base), counts(map[Type]int{SQLite: 3}); got != want {
			t.Errorf("open: got %v, want %v", got, want)
		}
		db2 := openSQLite(t, dbPath)
		// A second handle: its own database and -wal; the -shm is shared.
		if got, want := delta(t, c, base), counts(map[Type]int{SQLite: 5}); got != want {
			t.Errorf("second handle: got %v, want %v", got, want)
		}
		if err := db2.Close(); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if got := delta(t, c, base); got != (Counts{}) {
			t.Errorf("closed: got %v, want all 0", got)
		}
	})
	t.Run("SQLiteViaSymlinkedDirectory", func(t *testing.T) {
		base := count(t, c)
		db := openSQLite(t, viaLink)
		// /proc shows the resolved path, .../real/linked.db.
		if got, want := delta(t, c, base), counts(map[Type]int{SQLite: 3}); got != want {
			t.Errorf("open: got %v, want %v", got, want)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if got := delta(t, c, base); got != (Counts{}) {
			t.Errorf("closed: got %v, want all 0", got)
		}
	})
	t.Run("SQLiteJournalByName", func(t *testing.T) {
		base := count(t, c)
		f, err := os.Create(dbPath + "-journal")
		if err != nil {
			t.Fatal(err)
		}
		other, err := os.Create(filepath.Join(dir, "worker.db")) // same name, another directory
		if err != nil {
			t.Fatal(err)
		}
		if got, want := delta(t, c, base), counts(map[Type]int{SQLite: 1, File: 1}); got != want {
			t.Errorf("got %v, want %v", got, want)
		}
		f.Close()
		other.Close()
	})
	t.Run("Pipe", func(t *testing.T) {
		base := count(t, c)
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := delta(t, c, base), counts(map[Type]int{Pipe: 2}); got != want {
			t.Errorf("got %v, want %v", got, want)
		}
		r.Close()
		w.Close()
		if got := delta(t, c, base); got != (Counts{}) {
			t.Errorf("closed: got %v, want all 0", got)
		}
	})
	t.Run("Socket", func(t *testing.T) {
		base := count(t, c)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := delta(t, c, base), counts(map[Type]int{Socket: 1}); got != want {
			t.Errorf("listener: got %v, want %v", got, want)
		}
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		server, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := delta(t, c, base), counts(map[Type]int{Socket: 3}); got != want {
			t.Errorf("listener and two ends: got %v, want %v", got, want)
		}
		server.Close()
		conn.Close()
		ln.Close()
		if got := delta(t, c, base); got != (Counts{}) {
			t.Errorf("closed: got %v, want all 0", got)
		}
	})
	t.Run("AnonInode", func(t *testing.T) {
		base := count(t, c)
		efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := delta(t, c, base), counts(map[Type]int{AnonInode: 2}); got != want {
			t.Errorf("got %v, want %v", got, want)
		}
		unix.Close(efd)
		unix.Close(epfd)
	})
	t.Run("PlainFile", func(t *testing.T) {
		base := count(t, c)
		f, err := os.Create(filepath.Join(dir, "plain.txt"))
		if err != nil {
			t.Fatal(err)
		}
		d, err := os.Open(dir) // a directory counts as file
		if err != nil {
			t.Fatal(err)
		}
		null, err := os.Open(os.DevNull) // so does a device
		if err != nil {
			t.Fatal(err)
		}
		if got, want := delta(t, c, base), counts(map[Type]int{File: 3}); got != want {
			t.Errorf("got %v, want %v", got, want)
		}
		f.Close()
		d.Close()
		null.Close()
		if got := delta(t, c, base); got != (Counts{}) {
			t.Errorf("closed: got %v, want all 0", got)
		}
	})
	t.Run("Other", func(t *testing.T) {
		// A namespace descriptor reads as net:[4026531840].
		fd, err := unix.Open("/proc/self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Skipf("cannot open a namespace descriptor here: %v", err)
		}
		defer unix.Close(fd)
		base := count(t, c)
		unix.Close(fd)
		if got, want := delta(t, c, base), counts(map[Type]int{Other: -1}); got != want {
			t.Errorf("closing it: got %v, want %v", got, want)
		}
	})
}

// TestCounter_Classify counts a directory of symlinks standing for /proc's,
// so that every kind of target is checked, deterministically.
func TestCounter_Classify(t *testing.T) {
	dir := t.TempDir()
	targets := map[string]Type{
		"/data/app.db":                SQLite,
		"/data/app.db-wal":            SQLite,
		"/data/app.db-shm":            SQLite,
		"/data/app.db-journal":        SQLite,
		"/data/app.db-journal.bak":    File,
		"/data/app.db2":               File,
		"/data/other.db":              File,
		"/data/app.db (deleted)":      File,
		"/dev/null":                   File,
		"socket:[123456]":             Socket,
		"pipe:[7890]":                 Pipe,
		"anon_inode:[eventpoll]":      AnonInode,
		"anon_inode:[eventfd]":        AnonInode,
		"anon_inode:inotify":          AnonInode,
		"net:[4026531840]":            Other,
		"mnt:[4026531841]":            Other,
		"relative/path":               Other,
		strings.Repeat("x", 200) + "": Other,
	}
	var want Counts
	fd := 100000 // far above any real descriptor, so never Count's own
	for target, typ := range targets {
		if err := os.Symlink(target, filepath.Join(dir, fmt.Sprint(fd))); err != nil {
			t.Fatal(err)
		}
		want.n[typ]++
		fd++
	}
	got, err := newCounterFor(t, dir, "/data/app.db").Count()
	if err != nil {
		t.Fatalf("Count: %v", err)
	}
	if got != want {
		t.Errorf("got %v, want %v", got, want)
	}
	if got.Total() != len(targets) {
		t.Errorf("Total: got %d, want %d", got.Total(), len(targets))
	}
}

func TestCounter_CountMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "gone")
	_, err := newCounterFor(t, dir).Count()
	want := "cannot open " + dir + ": no such file or directory"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func TestCounter_TotalMatchesProcfs(t *testing.T) {
	proc, err := procfs.NewProc(os.Getpid())
	if err != nil {
		t.Skipf("no procfs: %v", err)
	}
	dir := t.TempDir()
	c := newCounter(t, filepath.Join(dir, "worker.db"))

	// Some of every kind, so that the total is more than the baseline.
	db := openSQLite(t, filepath.Join(dir, "worker.db"))
	defer db.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	for i := range 20 {
		// Alternate the order; nothing opens or closes in between.
		var got Counts
		var want int
		if i%2 == 0 {
			got = count(t, c)
			want, err = proc.FileDescriptorsLen()
		} else {
			want, err = proc.FileDescriptorsLen()
			got = count(t, c)
		}
		if err != nil {
			t.Fatalf("FileDescriptorsLen: %v", err)
		}
		if got.Total() != want {
			t.Fatalf("round %d: got total %d (%v), want %d from procfs", i, got.Total(), got, want)
		}
		if got.Get(SQLite) != 3 || got.Get(Pipe) < 2 || got.Get(Socket) < 1 {
			t.Fatalf("round %d: got %v, want sqlite=3, pipe>=2, socket>=1", i, got)
		}
	}
}

// openDevNull opens descriptors until the process has n, raising the soft
// RLIMIT_NOFILE if needed; both are undone when b ends.
func openDevNull(b *testing.B, c *Counter, n int) {
	b.Helper()
	have := count(b, c).Total()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if need := uint64(n + 64); lim.Cur < need {
		if lim.Max < need {
			b.Skipf("RLIMIT_NOFILE hard limit %d is below %d", lim.Max, need)
		}
		raised := lim
		raised.Cur = need
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			b.Skipf("cannot raise RLIMIT_NOFILE to %d: %v", need, err)
		}
		orig := lim
		b.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig) })
	}
	fds := make([]int, 0, n)
	b.Cleanup(func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	})
	for have+len(fds) < n {
		fd, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			b.Fatalf("open %s with %d descriptors: %v", os.DevNull, have+len(fds), err)
		}
		fds = append(fds, fd)
	}
	if got := count(b, c).Total(); got != n {
		b.Fatalf("got %d descriptors, want %d", got, n)
	}
}

// BenchmarkCounter_Count measures Count against its floor, one readlinkat
// per descriptor on a directory opened beforehand, with 10, 1,000 and
// 10,000 descriptors open.
func BenchmarkCounter_Count(b *testing.B) { benchmarkCount(b, false) }

// BenchmarkCounter_CountListing measures Count against the system calls it
// cannot do without: the floor of BenchmarkCounter_Count plus the listing
// of the directory, an lseek to its start and getdents64 until a short
// read, into a buffer of Count's size. What is left of x-floor is Count's
// own work: parsing the records and classifying the targets.
func BenchmarkCounter_CountListing(b *testing.B) { benchmarkCount(b, true) }

// benchmarkCount is BenchmarkCounter_Count, with the listing in the floor
// when listing is set.
func benchmarkCount(b *testing.B, listing bool) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("fds=%d", n), func(b *testing.B) {
			c := newCounter(b, filepath.Join(b.TempDir(), "worker.db"))
			openDevNull(b, c, n)
			dfd, names := fdNames(b)
			var buf [unix.PathMax]byte
			dents := new(buffers).dents[:]
			floorbench.Pair(b, func(b *testing.B) {
				if listing {
					listDir(b, dfd, dents)
				}
				for _, name := range names {
					if _, errno := readlinkat(dfd, &name[0], buf[:]); errno != 0 {
						b.Fatalf("readlinkat %s: %v", name, errno)
					}
				}
			}, func(b *testing.B) {
				if _, err := c.Count(); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// listDir reads the directory dfd from its start as Count does: getdents64
// into dents until a short read.
func listDir(b *testing.B, dfd int, dents []byte) {
	if _, err := unix.Seek(dfd, 0, io.SeekStart); err != nil {
		b.Fatal(err)
	}
	for {
		got, err := unix.Getdents(dfd, dents)
		if err != nil {
			b.Fatal(err)
		}
		if got <= len(dents)-direntMax {
			return
		}
	}
}

// fdNames opens /proc/self/fd and returns it and the NUL-terminated names of
// the process's descriptors, its own included: Count sees it too.
func fdNames(b *testing.B) (int, [][]byte) {
	dfd, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Close(dfd) })
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		b.Fatal(err)
	}
	var names [][]byte
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			continue // the ReadDir's own descriptor, closed by now
		}
		names = append(names, append([]byte(e.Name()), 0))
	}
	return dfd, names
}

// Ensure a Count on the kept, rewound descriptor sees a descriptor opened
// and then closed since the previous Count: procfs lists the table afresh
// after lseek to 0.
func TestCounter_Count_FreshAfterRewind(t *testing.T) {
	c := NewCounter()
	defer c.Close()
	kept := c.held.fd
	if kept < 0 {
		t.Fatal("NewCounter: got no kept descriptor, want one")
	}
	base := count(t, c)
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := delta(t, c, base), counts(map[Type]int{File: 1}); got != want {
		t.Errorf("file open: got %v, want %v", got, want)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := delta(t, c, base); got != (Counts{}) {
		t.Errorf("file closed: got %v, want all 0", got)
	}
	if c.held.fd != kept {
		t.Errorf("kept descriptor: got %d, want %d (the one from NewCounter, rewound)", c.held.fd, kept)
	}
}

// Ensure Close closes the kept descriptor (the total falls by one), is safe
// twice, and that Count still works, and matches procfs, after it.
func TestCounter_Close(t *testing.T) {
	proc, err := procfs.NewProc(os.Getpid())
	if err != nil {
		t.Skipf("no procfs: %v", err)
	}
	c := NewCounter()
	before := count(t, c)
	kept := c.held.fd
	if _, err := unix.FcntlInt(uintptr(kept), unix.F_GETFD, 0); err != nil {
		t.Fatalf("kept descriptor %d before Close: %v", kept, err)
	}
	for i := range 2 {
		if err := c.Close(); err != nil {
			t.Fatalf("Close %d: got %v, want nil", i+1, err)
		}
	}
	if _, err := unix.FcntlInt(uintptr(kept), unix.F_GETFD, 0); err != unix.EBADF {
		t.Errorf("kept descriptor %d after Close: got %v, want EBADF", kept, err)
	}
	after := count(t, c)
	want, err := proc.FileDescriptorsLen()
	if err != nil {
		t.Fatal(err)
	}
	if got := after.Total(); got != want || got != before.Total()-1 || after.Get(File) != before.Get(File)-1 {
		t.Errorf("Count after Close: got %v (total %d), want total %d from procfs and %v before Close less the kept descriptor, a file", after, got, want, before)
	}
	if c.held.fd != -1 {
		t.Errorf("Count after Close: got kept descriptor %d, want none (-1)", c.held.fd)
	}
}

// Ensure a Count that finds the kept descriptor busy counts on one of its
// own, left out, and gives the same counts as on the kept one.
func TestCounter_CountBusy(t *testing.T) {
	c := NewCounter()
	defer c.Close()
	want := count(t, c)
	c.held.mu.Lock() // as a Count in progress holds it
	got, err := c.Count()
	c.held.mu.Unlock()
	if err != nil {
		t.Fatalf("Count while busy: %v", err)
	}
	if got != want {
		t.Errorf("Count while busy: got %v, want %v", got, want)
	}
}

// Ensure concurrent counts are safe (under -race) and each counts at most
// the other counts' own descriptors more, while nothing else opens or
// closes.
func TestCounter_CountConcurrent(t *testing.T) {
	c := NewCounter()
	defer c.Close()
	want := count(t, c)
	const n = 8
	got := make([]Counts, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			for range 50 {
				var now Counts
				if now, errs[i] = c.Count(); errs[i] != nil {
					return
				}
				if extra := now.Get(File) - want.Get(File); extra < 0 || extra > n-1 || now.Total()-now.Get(File) != want.Total()-want.Get(File) {
					got[i] = now
					return
				}
			}
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("goroutine %d: Count: %v", i, errs[i])
		} else if got[i] != (Counts{}) {
			t.Errorf("goroutine %d: got %v, want %v with at most %d more files", i, got[i], want, n-1)
		}
	}
}
