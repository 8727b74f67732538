package fdstat_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/sqlworker/worker/fdstat"
)

// fakeFDs makes a directory that reads like /proc/<pid>/fd: one symlink per
// descriptor, to what the kernel would report.
func fakeFDs(targets map[string]string) string {
	dir, err := os.MkdirTemp("", "fdstat-example-")
	if err != nil {
		log.Fatal(err)
	}
	for fd, target := range targets {
		if err := os.Symlink(target, filepath.Join(dir, fd)); err != nil {
			log.Fatal(err)
		}
	}
	return dir
}

// Count the descriptors of this process by type. The database given to
// NewCounter, with its -wal and -shm, counts as sqlite.
func ExampleNewCounter() {
	counter := fdstat.NewCounter("/var/lib/app/app.db")
	defer counter.Close() // it holds a descriptor of /proc/self/fd
	counts, err := counter.Count()
	if err != nil {
		log.Fatal(err)
	}
	// A test binary holds at least its standard streams.
	fmt.Println(counts.Total() >= 3, counts.Get(fdstat.SQLite))
	// Output: true 0
}

// Count another process through its fd directory: here a made-up one.
func ExampleCounter_Count() {
	dir := fakeFDs(map[string]string{
		"3": "/var/lib/app/app.db",
		"4": "/var/lib/app/app.db-wal",
		"5": "socket:[4242]",
		"6": "pipe:[77]",
		"7": "anon_inode:[eventpoll]",
		"8": "/var/log/app.log",
	})
	defer os.RemoveAll(dir)
	counter := fdstat.NewCounterFor(dir, "/var/lib/app/app.db")
	defer counter.Close()
	counts, err := counter.Count()
	if err != nil {
		log.Fatal(err)
	}
	for _, t := range fdstat.Types() {
		fmt.Println(t, counts.Get(t))
	}
	// Output:
	// sqlite 2
	// socket 1
	// pipe 1
	// anon_inode 1
	// file 1
	// other 0
}

// Export the counts at scrape time; worker_open_fds unless WithNamespace
// says otherwise.
func ExampleNewCollector() {
	dir := fakeFDs(map[string]string{"3": "socket:[1]", "4": "socket:[2]", "5": "/etc/hosts"})
	defer os.RemoveAll(dir)
	counter := fdstat.NewCounterFor(dir)
	defer counter.Close()
	collector := fdstat.NewCollector(counter, fdstat.WithNamespace("app"))
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector)

	out, err := testutil.CollectAndFormat(collector, expfmt.TypeTextPlain, "app_open_fds")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(out))
	// Output:
	// # HELP app_open_fds Open file descriptors of the process by what they point to.
	// # TYPE app_open_fds gauge
	// app_open_fds{type="anon_inode"} 0
	// app_open_fds{type="file"} 1
	// app_open_fds{type="other"} 0
	// app_open_fds{type="pipe"} 0
	// app_open_fds{type="socket"} 2
	// app_open_fds{type="sqlite"} 0
}
