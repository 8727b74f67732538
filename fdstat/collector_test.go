package fdstat

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/procfs"
)

const header = `# HELP worker_open_fds Open file descriptors of the process by what they point to.
# TYPE worker_open_fds gauge
`

func exposition(c Counts) string {
	var b strings.Builder
	b.WriteString(header)
	for _, t := range Types() {
		fmt.Fprintf(&b, "worker_open_fds{type=%q} %d\n", t, c.Get(t))
	}
	return b.String()
}

func TestCollector_Collect(t *testing.T) {
	t.Run("EveryTypeEvenWhenZero", func(t *testing.T) {
		// One socket and nothing else: the other five types are 0, present.
		dir := t.TempDir()
		if err := os.Symlink("socket:[42]", filepath.Join(dir, "100000")); err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(NewCollector(newCounterFor(t, dir)))
		want := header + `worker_open_fds{type="anon_inode"} 0
worker_open_fds{type="file"} 0
worker_open_fds{type="other"} 0
worker_open_fds{type="pipe"} 0
worker_open_fds{type="socket"} 1
worker_open_fds{type="sqlite"} 0
`
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "worker_open_fds"); err != nil {
			t.Error(err)
		}
	})
	t.Run("ThisProcess", func(t *testing.T) {
		dir := t.TempDir()
		db := openSQLite(t, filepath.Join(dir, "worker.db"))
		defer db.Close()
		counter := newCounter(t, filepath.Join(dir, "worker.db"))
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(NewCollector(counter))

		// Nothing opens or closes a descriptor between the two counts.
		want := count(t, counter)
		if err := testutil.GatherAndCompare(reg, strings.NewReader(exposition(want)), "worker_open_fds"); err != nil {
			t.Error(err)
		}
		if want.Get(SQLite) != 3 {
			t.Errorf("sqlite: got %d, want 3", want.Get(SQLite))
		}
		if got := testutil.CollectAndCount(NewCollector(counter), "worker_open_fds"); got != len(Types()) {
			t.Errorf("CollectAndCount: got %d series, want %d", got, len(Types()))
		}
	})
	t.Run("SumMatchesProcessOpenFDs", func(t *testing.T) {
		if _, err := procfs.NewDefaultFS(); err != nil {
			t.Skipf("no procfs: %v", err)
		}
		// client_golang's process collector and ours, gathered one after
		// the other: a registry runs its collectors concurrently, and
		// then either can see a descriptor the other holds for a moment
		// (the process collector reads /proc/self/stat, our Count holds
		// /proc/self/fd), which makes the two differ by one or two.
		procReg := prometheus.NewPedanticRegistry()
		procReg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(NewCollector(newCounter(t)))
		var mfs []*dto.MetricFamily
		for _, g := range []prometheus.Gatherer{procReg, reg} {
			got, err := g.Gather()
			if err != nil {
				t.Fatalf("Gather: %v", err)
			}
			mfs = append(mfs, got...)
		}
		var sum, open float64
		for _, mf := range mfs {
			switch mf.GetName() {
			case "worker_open_fds":
				for _, m := range mf.GetMetric() {
					sum += m.GetGauge().GetValue()
				}
			case "process_open_fds":
				open = mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		if sum != open || sum == 0 {
			t.Errorf("sum of worker_open_fds: got %v, want process_open_fds %v", sum, open)
		}
	})
	t.Run("Lint", func(t *testing.T) {
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(NewCollector(newCounter(t)))
		problems, err := testutil.GatherAndLint(reg)
		if err != nil {
			t.Fatalf("GatherAndLint: %v", err)
		}
		for _, p := range problems {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	})
	t.Run("CountError", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "gone")
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(NewCollector(newCounterFor(t, dir)))
		_, err := reg.Gather()
		if err == nil || !strings.Contains(err.Error(), "cannot open "+dir) {
			t.Errorf("Gather: got %v, want an error naming %s", err, dir)
		}
	})
	t.Run("Namespace", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Symlink("pipe:[7]", filepath.Join(dir, "3")); err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(NewCollector(newCounterFor(t, dir), WithNamespace("app"), WithConstLabels(prometheus.Labels{"process": "sidecar"})))
		want := `# HELP app_open_fds Open file descriptors of the process by what they point to.
# TYPE app_open_fds gauge
app_open_fds{process="sidecar",type="anon_inode"} 0
app_open_fds{process="sidecar",type="file"} 0
app_open_fds{process="sidecar",type="other"} 0
app_open_fds{process="sidecar",type="pipe"} 1
app_open_fds{process="sidecar",type="socket"} 0
app_open_fds{process="sidecar",type="sqlite"} 0
`
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "app_open_fds"); err != nil {
			t.Error(err)
		}
	})
}
