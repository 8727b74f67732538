package series_test

import (
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/sqlworker/worker/soak/internal/detect"
	"github.com/sqlworker/worker/soak/internal/scrape"
	"github.com/sqlworker/worker/soak/internal/series"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Ensure watched samples are recorded per label set, in watch order, and
// unexposed names are reported missing.
func TestRecording_Add(t *testing.T) {
	r := series.NewRecording(series.DefaultWatch)
	for i, text := range []string{
		"go_goroutines 5\nworker_open_fds{type=\"socket\"} 2\nworker_open_fds{type=\"file\"} 1\nother 3\n",
		"go_goroutines 6\nworker_open_fds{type=\"socket\"} 2\nworker_open_fds{type=\"file\"} 2\nprocess_open_fds 9\n",
	} {
		v, err := scrape.Parse(strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		r.Add(float64(i), v)
	}
	var keys []string
	for _, s := range r.Series() {
		keys = append(keys, s.Key)
	}
	if got, want := strings.Join(keys, " "), `process_open_fds worker_open_fds{type="file"} worker_open_fds{type="socket"} go_goroutines`; got != want {
		t.Fatalf("keys %q, want %q", got, want)
	}
	if got, want := len(r.Get(`worker_open_fds{type="file"}`).V), 2; got != want {
		t.Fatalf("%d points, want %d", got, want)
	}
	if got, ok := r.Sum("worker_open_fds"); !ok || got != 4 {
		t.Fatalf("Sum=%g, want 4", got)
	}
	missing := strings.Join(r.Missing(), ",")
	if strings.Contains(missing, "go_goroutines") || !strings.Contains(missing, "go_sql_open_connections") {
		t.Fatalf("missing %q, want go_sql_open_connections and not go_goroutines", missing)
	}
}

// Ensure unknown names get a spec by their unit.
func TestSpecFor(t *testing.T) {
	if got := series.SpecFor("foo_bytes").Kind; got != detect.Memory {
		t.Fatalf("foo_bytes kind %v, want memory", got)
	}
	if got := series.SpecFor("foo_total").Kind; got != detect.Count {
		t.Fatalf("foo_total kind %v, want count", got)
	}
	if got, want := series.SpecFor("go_goroutines").Floor, float64(series.DefaultCountFloor); got != want {
		t.Fatalf("go_goroutines floor %g, want %g", got, want)
	}
	if got := series.SpecFor("go_goroutines").Fixed; got {
		t.Fatalf("go_goroutines Fixed=%v, want false: judged by its noise", got)
	}
}
