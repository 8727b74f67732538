package worker_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/sqlworker/worker"
)

// Ensure WithOverlap sets a Go job's overlap policy, a config entry's
// overlap overrides it, the default is skip, and a bad one is refused by
// Register naming the job and the option.
func TestWorker_Register_Overlap(t *testing.T) {
	nop := func(context.Context, *sql.DB) (int64, error) { return 0, nil }
	w, _ := MustNewWorker(t, MustParseConfig(t, "jobs:\n  - {name: overridden, overlap: replace}\n"))
	for _, name := range []string{"own", "overridden"} {
		if err := w.Register(name, "@every 1m", nop, worker.WithOverlap(worker.OverlapBufferOne)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Register("plain", "@every 1m", nop); err != nil {
		t.Fatal(err)
	}
	list, err := w.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]worker.Overlap{"own": worker.OverlapBufferOne, "overridden": worker.OverlapReplace,
		"plain": worker.OverlapSkip, "heartbeat": worker.OverlapSkip}
	for _, j := range list {
		if p, ok := want[j.Name]; ok {
			delete(want, j.Name)
			if j.Overlap != p {
				t.Errorf("%s: got overlap %q, want %q", j.Name, j.Overlap, p)
			}
		}
	}
	if len(want) != 0 {
		t.Errorf("jobs missing from Jobs: %v", want)
	}
	w2, _ := MustNewWorker(t, MustParseConfig(t, ""))
	err = w2.Register("bad", "@every 1m", nop, worker.WithOverlap("allow"))
	if want := `worker: job "bad": WithOverlap: must be skip, buffer_one or replace, got "allow"`; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}
