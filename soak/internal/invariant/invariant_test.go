package invariant_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/sqlworker/worker/soak/internal/invariant"
	"github.com/sqlworker/worker/soak/internal/scrape"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// vec parses exposition text.
func vec(t *testing.T, text string) model.Vector {
	t.Helper()
	v, err := scrape.Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func result(rs []invariant.Result, rule string) invariant.Result {
	for _, r := range rs {
		if r.Rule == rule {
			return r
		}
	}
	return invariant.Result{}
}

const pool = `go_sql_max_open_connections{db_name="main"} 4
go_sql_open_connections{db_name="main"} %OPEN%
go_sql_in_use_connections{db_name="main"} %INUSE%
go_sql_wait_count_total{db_name="main"} %WAIT%
`

func poolText(open, inUse, wait string) string {
	return strings.NewReplacer("%OPEN%", open, "%INUSE%", inUse, "%WAIT%", wait).Replace(pool)
}

// Ensure a healthy worker holds every rule and a generic one has none.
func TestChecker_Healthy(t *testing.T) {
	c := invariant.New(invariant.DefaultPinnedFor)
	for i := range 5 {
		c.Observe(float64(i), vec(t, poolText("2", "1", "0")+`worker_db_handles_open 1
worker_db_init_calls_total{result="opened"} 1
worker_job_duplicate_ticks{job_name="a"} 0
worker_job_runs_total{job_name="a",result="success"} `+string(rune('0'+i))+"\n"))
	}
	for _, r := range c.Finish() {
		if r.Rule == invariant.RuleServerConn {
			// PostgreSQL only.
			if r.Applies {
				t.Fatalf("%s applies to a SQLite worker, want not", r.Rule)
			}
			continue
		}
		if !r.Applies || r.Broken {
			t.Fatalf("%s: applies=%v broken=%v (%s), want true false", r.Rule, r.Applies, r.Broken, r.Detail)
		}
	}

	g := invariant.New(invariant.DefaultPinnedFor)
	g.Observe(0, vec(t, "go_goroutines 3\n"))
	for _, r := range g.Finish() {
		if r.Applies || r.Broken {
			t.Fatalf("%s applies to a generic target, want not", r.Rule)
		}
	}
}

// Ensure each rule breaks on what it guards against.
func TestChecker_Broken(t *testing.T) {
	t.Run("SecondHandle", func(t *testing.T) {
		c := invariant.New(time.Second)
		c.Observe(0, vec(t, "worker_db_handles_open 1\n"))
		c.Observe(1, vec(t, "worker_db_handles_open 3\n"))
		r := result(c.Broken(), invariant.RuleOneHandle)
		if !r.Broken || r.Worst != 3 || r.At != 1 {
			t.Fatalf("got %+v, want broken at 1 with worst 3", r)
		}
	})
	t.Run("InitOpenedTwice", func(t *testing.T) {
		c := invariant.New(time.Second)
		c.Observe(0, vec(t, `worker_db_init_calls_total{result="opened"} 2`+"\n"))
		if got := result(c.Broken(), invariant.RuleOneOpen); !got.Broken {
			t.Fatalf("got %+v, want broken", got)
		}
	})
	t.Run("PoolOverLimit", func(t *testing.T) {
		c := invariant.New(time.Second)
		c.Observe(0, vec(t, poolText("5", "0", "0")))
		if got := result(c.Broken(), invariant.RulePoolLimit); !got.Broken {
			t.Fatalf("got %+v, want broken", got)
		}
	})
	t.Run("PoolPinned", func(t *testing.T) {
		c := invariant.New(10 * time.Second)
		for i := range 12 {
			c.Observe(float64(i), vec(t, poolText("4", "4", string(rune('0'+i%10)))))
		}
		got := result(c.Broken(), invariant.RulePoolPinned)
		if !got.Broken || got.Series != `go_sql_in_use_connections{db_name="main"}` {
			t.Fatalf("got %+v, want broken on go_sql_in_use_connections", got)
		}
	})
	t.Run("PoolBusyButMoving", func(t *testing.T) {
		// Full now and then, never for 10 s straight: healthy.
		c := invariant.New(10 * time.Second)
		for i := range 60 {
			inUse := "4"
			if i%7 == 0 {
				inUse = "1"
			}
			c.Observe(float64(i), vec(t, poolText("4", inUse, "9")))
		}
		if got := result(c.Finish(), invariant.RulePoolPinned); got.Broken {
			t.Fatalf("got %+v, want held", got)
		}
	})
	t.Run("NoJobRan", func(t *testing.T) {
		c := invariant.New(time.Second)
		c.Observe(0, vec(t, `worker_job_runs_total{job_name="a",result="success"} 7`+"\n"))
		c.Observe(1, vec(t, `worker_job_runs_total{job_name="a",result="success"} 7`+"\n"))
		if got := result(c.Broken(), invariant.RuleJobsRan); got.Broken {
			t.Fatal("jobs_ran broken before the end, want judged only at Finish")
		}
		if got := result(c.Finish(), invariant.RuleJobsRan); !got.Broken {
			t.Fatalf("got %+v, want broken", got)
		}
	})
	t.Run("StoppedEarly", func(t *testing.T) {
		c := invariant.New(time.Second)
		c.Observe(0, vec(t, `worker_job_runs_total{job_name="a",result="success"} 7`+"\n"))
		c.StoppedEarly()
		if got := result(c.Finish(), invariant.RuleJobsRan); got.Broken {
			t.Fatalf("got %+v, want not judged", got)
		}
	})
}

// fixture reads a scrape recorded from a replica on PostgreSQL (bin/worker
// --config.file soak/worker-soak-pg.yml), with the server's and the
// client's counts set.
func fixture(t *testing.T, name string, server map[string]int, client int) model.Vector {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(b), "%CLIENT%", strconv.Itoa(client))
	for _, state := range []string{"active", "idle"} {
		text = strings.ReplaceAll(text, "%"+strings.ToUpper(state)+"%", strconv.Itoa(server[state]))
	}
	return vec(t, text)
}

// Ensure server_within_client holds while the server shows the backends
// the client counts, also through a short excess, and breaks, naming the
// replica and both counts, on backends the client never counts.
func TestChecker_ServerWithinClient(t *testing.T) {
	type sample struct {
		active, idle, client int
		n                    int // samples in a row
	}
	for _, tc := range []struct {
		name    string
		samples []sample
		broken  bool
		detail  string
	}{
		{name: "Equal", samples: []sample{{1, 3, 4, 30}}},
		{name: "WithinSlack", samples: []sample{{1, 4, 4, 30}}},
		{name: "ShortExcess", samples: []sample{{1, 3, 4, 10}, {1, 6, 4, invariant.DefaultServerSamples}, {1, 3, 4, 10}}},
		{name: "ExcessEveryOtherSample", samples: []sample{{1, 6, 4, 4}, {1, 3, 4, 1}, {1, 6, 4, 4}, {1, 3, 4, 1}, {1, 6, 4, 4}}},
		{name: "ClientAboveServer", samples: []sample{{1, 1, 4, 30}}},
		{
			name: "Bypass", samples: []sample{{1, 3, 4, 10}, {1, 6, 4, invariant.DefaultServerSamples + 1}},
			broken: true,
			detail: "replica 2: 7 server backends, 4 client-side connections open: 3 the client does not count, for 6 samples in a row",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := invariant.NewReplica("2", invariant.DefaultPinnedFor)
			i := 0
			for _, s := range tc.samples {
				for range s.n {
					c.Observe(float64(i), fixture(t, "postgres-replica.prom", map[string]int{"active": s.active, "idle": s.idle}, s.client))
					i++
				}
			}
			r := result(c.Finish(), invariant.RuleServerConn)
			if !r.Applies {
				t.Fatalf("%s does not apply, want it to", r.Rule)
			}
			if got, want := r.Series, `soak_replica_server_backends{replica="2"}`; got != want {
				t.Errorf("series: got %v, want %v", got, want)
			}
			if r.Broken != tc.broken {
				t.Fatalf("broken: got %v (%s), want %v", r.Broken, r.Detail, tc.broken)
			}
			if tc.broken && r.Detail != tc.detail {
				t.Errorf("detail: got %v, want %v", r.Detail, tc.detail)
			}
			for _, o := range c.Broken() {
				if o.Rule != invariant.RuleServerConn {
					t.Errorf("%s broken (%s), want held", o.Rule, o.Detail)
				}
			}
		})
	}
}

// Ensure server_within_clients compares the server's own count with the
// replicas' together: it holds while they match, within a slack of one
// backend per replica, and breaks on backends no replica counts, such as
// connections under another application_name that no replica's
// worker_db_server_connections shows.
func TestCluster_ServerWithinClients(t *testing.T) {
	for _, tc := range []struct {
		name   string
		hidden int // backends on the server that no replica counts
		broken bool
	}{
		{name: "Matching"},
		{name: "WithinSlack", hidden: 3},
		{name: "Hidden", hidden: 4, broken: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := invariant.NewCluster()
			for i := range 2 * invariant.DefaultServerSamples {
				var all model.Vector
				for r, client := range []int{4, 3, 2} {
					replica := fixture(t, "postgres-replica.prom", map[string]int{"active": 1, "idle": client - 1}, client)
					all = append(all, scrape.Label(replica, strconv.Itoa(r+1))...)
				}
				all = append(all, vec(t, fmt.Sprintf("soak_server_backends %d\n", 9+tc.hidden))...)
				c.Observe(float64(i), all)
			}
			r := c.Result()
			if !r.Applies || r.Broken != tc.broken {
				t.Fatalf("applies %v, broken %v (%s), want true %v", r.Applies, r.Broken, r.Detail, tc.broken)
			}
			if want := "13 backends on the server, 9 client-side connections open over 3 replicas: 4 no replica counts, for 10 samples in a row"; tc.broken && r.Detail != want {
				t.Errorf("detail: got %v, want %v", r.Detail, want)
			}
		})
	}
	t.Run("SQLite", func(t *testing.T) {
		c := invariant.NewCluster()
		c.Observe(0, vec(t, "worker_db_connections_open 2\n"))
		if r := c.Result(); r.Applies {
			t.Fatalf("applies without the server's count, want not")
		}
	})
}

// Ensure each_tick_once breaks when a job has a tick with two success rows,
// naming the job, and stays broken.
func TestChecker_TickOnce(t *testing.T) {
	c := invariant.New(invariant.DefaultPinnedFor)
	c.Observe(0, vec(t, "worker_job_duplicate_ticks{job_name=\"a\"} 0\nworker_job_duplicate_ticks{job_name=\"b\"} 0\n"))
	c.Observe(1, vec(t, "worker_job_duplicate_ticks{job_name=\"a\"} 0\nworker_job_duplicate_ticks{job_name=\"b\"} 2\n"))
	c.Observe(2, vec(t, "worker_job_duplicate_ticks{job_name=\"a\"} 0\nworker_job_duplicate_ticks{job_name=\"b\"} 0\n"))
	r := result(c.Finish(), invariant.RuleTickOnce)
	if !r.Applies || !r.Broken || r.At != 1 || r.Worst != 2 || r.Detail != "ticks with two success rows: b (2)" {
		t.Errorf("each_tick_once: got %+v, want broken at 1 naming b (2)", r)
	}
}
