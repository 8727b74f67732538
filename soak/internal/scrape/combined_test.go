package scrape_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/common/model"

	"github.com/sqlworker/worker/soak/internal/scrape"
)

// source yields a fixed exposition, or an error.
type source struct {
	text string
	err  error
}

func (s source) Scrape(context.Context) (model.Vector, error) {
	if s.err != nil {
		return nil, s.err
	}
	return scrape.Parse(strings.NewReader(s.text))
}

const replicaText = `worker_db_connections_open 4
worker_db_server_connections{state="active"} 1
worker_db_server_connections{state="idle"} 3
worker_db_server_connections{state="idle_in_transaction"} 1
`

// Ensure a combined scrape labels each replica's samples, sums its server
// connections over state, and leaves the server's own samples unlabelled.
func TestCombined_Scrape(t *testing.T) {
	c := &scrape.Combined{Parts: []scrape.Part{
		{Replica: "1", Source: source{text: replicaText}},
		{Replica: "2", Source: source{text: "worker_db_connections_open 2\n"}},
		{Source: source{text: "soak_server_backends 6\n"}},
	}}
	vec, err := c.Scrape(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"worker_db_connections_open", []string{"replica", "1"}, 4},
		{"worker_db_connections_open", []string{"replica", "2"}, 2},
		{"worker_db_server_connections", []string{"replica", "1", "state", "idle"}, 3},
		{"soak_replica_server_backends", []string{"replica", "1"}, 5},
		{"soak_server_backends", []string{"replica", ""}, 6},
	} {
		got, ok := value(vec, tc.name, tc.labels...)
		if !ok || got != tc.want {
			t.Errorf("%s%v: got %v (%v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
	if _, ok := value(vec, "soak_replica_server_backends", "replica", "2"); ok {
		t.Errorf("soak_replica_server_backends of a replica without worker_db_server_connections: got one, want none")
	}
}

// Ensure a failed source fails the whole scrape, naming its error.
func TestCombined_ScrapeError(t *testing.T) {
	boom := errors.New("boom")
	c := &scrape.Combined{Parts: []scrape.Part{{Replica: "1", Source: source{text: replicaText}}, {Replica: "2", Source: source{err: boom}}}}
	if _, err := c.Scrape(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("got %v, want %v", err, boom)
	}
}
