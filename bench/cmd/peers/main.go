// Command peers runs the same three jobs, two every second and one every
// 5 s, for the same time on three peers side by side, scrapes the two that
// export metrics at the same rate, and prints each one's CPU and RSS and
// their ratios to this worker's:
//
//   - worker: this worker's binary (bin/worker), the built-in jobs off;
//   - node: a Node.js worker on better-sqlite3, node-cron and prom-client
//     (bench/peers/node, installed with npm ci);
//   - cron: one sqlite3 CLI process per run, spawned on the schedule by
//     "peers cron", a stand-in for system cron (whose resolution is a
//     minute) plus the CLI; its CPU includes its children's.
//
// Each job is one write transaction, then one job_runs row. See
// docs/performance.md and bench/bench.mk.
package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

// Defaults of the flags.
const (
	DefaultDuration       = 60 * time.Second
	DefaultScrapeInterval = time.Second
	DefaultWarmup         = 5 * time.Second
)

// job is one of the three jobs, as every peer runs it.
type job struct {
	Name     string `json:"name"`
	Schedule string `json:"schedule"` // six fields, seconds first
	SQL      string `json:"sql"`
	every    time.Duration
}

var jobs = []job{
	{Name: "ingest_a", Schedule: "* * * * * *", every: time.Second, SQL: "CREATE TABLE IF NOT EXISTS events " +
		"(job TEXT NOT NULL, at TEXT NOT NULL); INSERT INTO events VALUES ('ingest_a', strftime('%Y-%m-%dT%H:%M:%fZ'));"},
	{Name: "ingest_b", Schedule: "* * * * * *", every: time.Second, SQL: "CREATE TABLE IF NOT EXISTS events " +
		"(job TEXT NOT NULL, at TEXT NOT NULL); INSERT INTO events VALUES ('ingest_b', strftime('%Y-%m-%dT%H:%M:%fZ'));"},
	{Name: "expire", Schedule: "*/5 * * * * *", every: 5 * time.Second, SQL: "CREATE TABLE IF NOT EXISTS events " +
		"(job TEXT NOT NULL, at TEXT NOT NULL); DELETE FROM events WHERE at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-30 seconds');"},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "cron" {
		err = runCron(ctx, os.Args[2:], os.Stdout)
	} else {
		err = run(ctx, os.Args[1:], os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
}

// sample is what /proc says of a process at one moment.
type sample struct {
	cpu      time.Duration // user + system, its own and its waited-for children's
	childCPU time.Duration // of that, its waited-for children's
	rss      int64         // bytes
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat times on Linux.
const clockTick = 100

// readProc reads a process's CPU times from /proc/<pid>/stat and its RSS
// from /proc/<pid>/status.
func readProc(pid int) (sample, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return sample{}, err
	}
	// Fields after the command, which is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return sample{}, fmt.Errorf("cannot parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return sample{}, fmt.Errorf("cannot parse /proc/%d/stat: %d fields", pid, len(f))
	}
	var ticks [4]int64 // utime, stime, cutime, cstime
	for i, s := range f[11:15] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return sample{}, fmt.Errorf("cannot parse /proc/%d/stat: %w", pid, err)
		}
		ticks[i] = n
	}
	tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / clockTick }
	s := sample{cpu: tick(ticks[0] + ticks[1] + ticks[2] + ticks[3]), childCPU: tick(ticks[2] + ticks[3])}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return sample{}, err
	}
	for _, line := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return sample{}, fmt.Errorf("cannot parse VmRSS of /proc/%d/status: %w", pid, err)
			}
			s.rss = kb << 10
		}
	}
	return s, nil
}

// peer is one of the three, running.
type peer struct {
	name    string
	cmd     *exec.Cmd
	db      string
	metrics string // URL of its /metrics; "" for none
	log     *os.File

	cpuStart, childStart time.Duration
	cpuEnd, childEnd     time.Duration
	rssSum               int64
	rssMax               int64
	rssN                 int64
	scrapes              int
	scrapeFails          int
	childMaxRSS          int64 // cron: the largest sqlite3 process, from its rusage
}

type options struct {
	duration, scrapeInterval, warmup time.Duration
	worker, nodeDir, node, sqlite3   string
	dir                              string
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("peers", flag.ContinueOnError)
	var o options
	fs.DurationVar(&o.duration, "duration", DefaultDuration, "how long each peer runs the jobs, measured after the warm-up")
	fs.DurationVar(&o.scrapeInterval, "scrape.interval", DefaultScrapeInterval, "how often the worker and node peers are scraped")
	fs.DurationVar(&o.warmup, "warmup", DefaultWarmup, "how long the peers run before the measurement starts")
	fs.StringVar(&o.worker, "worker", "bin/worker", "the worker binary")
	fs.StringVar(&o.nodeDir, "node.dir", "bench/peers/node", "the Node.js peer's directory, with its node_modules")
	fs.StringVar(&o.node, "node", "node", "the node binary")
	fs.StringVar(&o.sqlite3, "sqlite3", "sqlite3", "the sqlite3 CLI")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.duration <= 0 || o.scrapeInterval <= 0 || o.warmup < 0 {
		return errors.New("-duration and -scrape.interval must be positive, -warmup not negative")
	}
	dir, err := os.MkdirTemp("", "peers-")
	if err != nil {
		return fmt.Errorf("cannot create a directory: %w", err)
	}
	defer os.RemoveAll(dir)
	o.dir = dir
	self, err := os.Executable()
	if err != nil {
		return err
	}
	peers, err := startPeers(o, self)
	defer func() {
		for _, p := range peers {
			if p.cmd.Process != nil {
				_ = p.cmd.Process.Kill() // stopped already, or failed to
				_ = p.cmd.Wait()
			}
		}
	}()
	if err != nil {
		return err
	}
	if err := measure(ctx, o, peers); err != nil {
		return err
	}
	for _, p := range peers {
		if err := stopPeer(p); err != nil {
			return err
		}
	}
	return printTable(out, o, peers)
}

func startPeers(o options, self string) ([]*peer, error) {
	jobsJSON, err := json.Marshal(jobs)
	if err != nil {
		return nil, err
	}
	wport, nport := freePort(), freePort()
	var y strings.Builder
	y.WriteString("builtin:\n")
	for _, b := range []string{"heartbeat", "wal_checkpoint", "optimize", "quick_check", "history_prune"} {
		fmt.Fprintf(&y, "  %s: {enabled: false}\n", b)
	}
	y.WriteString("jobs:\n")
	for _, j := range jobs {
		fmt.Fprintf(&y, "  - name: %s\n    schedule: %q\n    sql: %q\n", j.Name, j.Schedule, j.SQL)
	}
	cfg := filepath.Join(o.dir, "worker.yml")
	if err := os.WriteFile(cfg, []byte(y.String()), 0o644); err != nil {
		return nil, err
	}
	mk := func(name string, cmd *exec.Cmd, db, metrics string) (*peer, error) {
		log, err := os.Create(filepath.Join(o.dir, name+".log"))
		if err != nil {
			return nil, err
		}
		cmd.Stderr = log
		if cmd.Stdout == nil {
			cmd.Stdout = log
		}
		return &peer{name: name, cmd: cmd, db: db, metrics: metrics, log: log}, nil
	}
	var peers []*peer
	wdb := filepath.Join(o.dir, "worker.db")
	w, err := mk("worker", exec.Command(o.worker, "--config.file="+cfg, "--db.path="+wdb,
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(wport), "--log.level=warn"), wdb, fmt.Sprintf("http://127.0.0.1:%d/metrics", wport))
	if err != nil {
		return nil, err
	}
	peers = append(peers, w)
	ndb := filepath.Join(o.dir, "node.db")
	ncmd := exec.Command(o.node, filepath.Join(o.nodeDir, "worker.js"))
	ncmd.Env = append(os.Environ(), "DB="+ndb, "PORT="+strconv.Itoa(nport), "JOBS="+string(jobsJSON))
	n, err := mk("node", ncmd, ndb, fmt.Sprintf("http://127.0.0.1:%d/metrics", nport))
	if err != nil {
		return nil, err
	}
	peers = append(peers, n)
	cdb := filepath.Join(o.dir, "cron.db")
	c, err := mk("cron", exec.Command(self, "cron", "-db="+cdb, "-sqlite3="+o.sqlite3), cdb, "")
	if err != nil {
		return nil, err
	}
	peers = append(peers, c)
	for _, p := range peers {
		if err := p.cmd.Start(); err != nil {
			return peers, fmt.Errorf("cannot start %s: %w", p.name, err)
		}
	}
	return peers, nil
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// measure waits out the warm-up, then samples every peer and scrapes the
// two with metrics every scrape interval for the duration.
func measure(ctx context.Context, o options, peers []*peer) error {
	select {
	case <-time.After(o.warmup):
	case <-ctx.Done():
		return ctx.Err()
	}
	for _, p := range peers {
		s, err := readProc(p.cmd.Process.Pid)
		if err != nil {
			return fmt.Errorf("%s is not running (see its log %s): %w", p.name, p.log.Name(), err)
		}
		p.cpuStart, p.childStart = s.cpu, s.childCPU
	}
	client := &http.Client{Timeout: 5 * time.Second}
	tick := time.NewTicker(o.scrapeInterval)
	defer tick.Stop()
	end := time.After(o.duration)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-end:
			for _, p := range peers {
				s, err := readProc(p.cmd.Process.Pid)
				if err != nil {
					return fmt.Errorf("%s stopped (see its log %s): %w", p.name, p.log.Name(), err)
				}
				p.cpuEnd, p.childEnd = s.cpu, s.childCPU
			}
			return nil
		case <-tick.C:
		}
		var wg sync.WaitGroup
		for _, p := range peers {
			if s, err := readProc(p.cmd.Process.Pid); err == nil {
				p.rssSum, p.rssN, p.rssMax = p.rssSum+s.rss, p.rssN+1, max(p.rssMax, s.rss)
			}
			if p.metrics == "" {
				continue
			}
			wg.Go(func() {
				p.scrapes++
				resp, err := client.Get(p.metrics)
				if err != nil {
					p.scrapeFails++
					return
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					p.scrapeFails++
				}
			})
		}
		wg.Wait()
	}
}

// stopPeer stops a peer with SIGTERM; the cron driver's last line in its
// log is its children's largest RSS.
func stopPeer(p *peer) error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	var exitErr error
	select {
	case exitErr = <-done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		exitErr = fmt.Errorf("did not stop within 30s of SIGTERM, killed: %w", <-done)
	}
	p.log.Close()
	if exitErr != nil {
		b, _ := os.ReadFile(p.log.Name())
		return fmt.Errorf("%s: %w; its log:\n%s", p.name, exitErr, b)
	}
	if p.name == "cron" {
		f, err := os.Open(p.log.Name())
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "children_maxrss_bytes "); ok {
				p.childMaxRSS, _ = strconv.ParseInt(v, 10, 64)
			}
		}
	}
	return nil
}

// runsRecorded counts the job_runs rows of a peer's database.
func runsRecorded(path string) (int, error) {
	d, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		return 0, err
	}
	defer d.Close()
	var n int
	err = d.QueryRow("SELECT count(*) FROM job_runs").Scan(&n)
	return n, err
}

func printTable(out io.Writer, o options, peers []*peer) error {
	fmt.Fprintf(out, "%d jobs (2 every 1 s, 1 every 5 s), measured %s after %s of warm-up, scraped every %s\n\n",
		len(jobs), o.duration, o.warmup, o.scrapeInterval)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "peer\tjob_runs rows\tCPU s\tCPU % of a core\tCPU ×worker\tRSS mean MiB\tRSS max MiB\tRSS ×worker\tscrapes (failed)\t")
	base := peers[0]
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	var driverRSS int64
	var childShare float64
	for _, p := range peers {
		rows, err := runsRecorded(p.db)
		if err != nil {
			return fmt.Errorf("%s: cannot count job_runs: %w", p.name, err)
		}
		cpu := p.cpuEnd - p.cpuStart
		rss, rssMax := p.rssSum/max(p.rssN, 1), p.rssMax
		if p.name == "cron" {
			// What runs the jobs is the sqlite3 processes, one at a time
			// per run: the largest is the memory a run takes. The driver
			// stands in for crond, which is resident anyway.
			driverRSS = rss
			rss, rssMax = p.childMaxRSS, p.childMaxRSS
			childShare = (p.childEnd - p.childStart).Seconds() / max(cpu.Seconds(), 1e-9)
		}
		baseRSS := base.rssSum / max(base.rssN, 1)
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.2f\t%.1f\t%.1f\t%.2f\t%d (%d)\t\n", p.name, rows, cpu.Seconds(),
			100*cpu.Seconds()/o.duration.Seconds(), cpu.Seconds()/max((base.cpuEnd-base.cpuStart).Seconds(), 1e-9),
			mib(rss), mib(rssMax), float64(rss)/float64(max(baseRSS, 1)), p.scrapes, p.scrapeFails)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\ncron: CPU is the driver's and its sqlite3 processes' (%.0f %% theirs); RSS is the largest sqlite3 process's\n"+
		"(each lives for one run); the driver, a stand-in for crond, held %.1f MiB besides.\n", 100*childShare, mib(driverRSS))
	return nil
}

// runCron is the cron stand-in: on each job's schedule, one sqlite3
// process runs the job's transaction and then writes its job_runs row. At
// SIGTERM it waits for the runs in progress and prints its children's
// largest RSS.
func runCron(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("peers cron", flag.ContinueOnError)
	db := fs.String("db", "", "the database")
	sqlite3 := fs.String("sqlite3", "sqlite3", "the sqlite3 CLI")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *db == "" {
		return errors.New("-db: must not be empty")
	}
	setup := exec.Command(*sqlite3, *db, setupSQL)
	if b, err := setup.CombinedOutput(); err != nil {
		return fmt.Errorf("cannot create %s: %w: %s", *db, err, b)
	}
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Go(func() {
			for {
				now := time.Now()
				next := now.Truncate(j.every).Add(j.every)
				select {
				case <-ctx.Done():
					return
				case <-time.After(next.Sub(now)):
				}
				cmd := exec.Command(*sqlite3, "-bail", *db)
				cmd.Stdin = strings.NewReader(cronScript(j, next))
				if b, err := cmd.CombinedOutput(); err != nil {
					fmt.Fprintf(os.Stderr, "%s: %v: %s\n", j.Name, err, b)
				}
			}
		})
	}
	wg.Wait()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return err
	}
	fmt.Fprintf(out, "children_maxrss_bytes %d\n", ru.Maxrss<<10)
	return nil
}

// setupSQL creates the cron stand-in's database.
const setupSQL = `PRAGMA journal_mode = WAL; CREATE TABLE IF NOT EXISTS job_runs (id INTEGER PRIMARY KEY,
	job TEXT NOT NULL, scheduled_at TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT NOT NULL,
	result TEXT NOT NULL, error TEXT NOT NULL DEFAULT '', rows_affected INTEGER NOT NULL DEFAULT 0);`

// cronScript is what one sqlite3 process runs for a run of j scheduled at
// scheduled: the job's transaction, then its job_runs row.
func cronScript(j job, scheduled time.Time) string {
	return fmt.Sprintf(`.timeout 5000
PRAGMA synchronous = NORMAL;
BEGIN IMMEDIATE;
%s
COMMIT;
INSERT INTO job_runs (job, scheduled_at, started_at, ended_at, result, rows_affected)
  VALUES ('%s', '%s', strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ'), strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ'), 'success', changes());
`, j.SQL, j.Name, scheduled.UTC().Format("2006-01-02T15:04:05.000Z"))
}
