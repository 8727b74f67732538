package invariant_test

import (
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
worker_job_runs_total{job_name="a",result="success"} `+string(rune('0'+i))+"\n"))
	}
	for _, r := range c.Finish() {
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
