package power

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/sqlworker/worker/soak/internal/standin"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Ensure the replay of the stand-in gives the verdicts the issue demands:
// one FD every 5 s caught in a 60 s soak, for every count series and on a
// non-Go profile, and nothing flagged on a clean noisy stand-in.
func TestReplay_Verdicts(t *testing.T) {
	for _, name := range leakSeries {
		o, err := replay(Point{Length: Lengths[0], Params: leakAt(name, 720, 0)})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := o.Caught, true; got != want {
			t.Errorf("%s at 720/h: caught %v, want %v", name, got, want)
		}
		if got, want := o.Alarms, 0; got != want {
			t.Errorf("%s at 720/h: %d false alarms, want %d", name, got, want)
		}
	}
	p := leakAt("process_open_fds", 720, 0)
	p.Profile = standin.ProcessOnly
	o, err := replay(Point{Length: Lengths[0], Params: p})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := o.Caught, true; got != want {
		t.Errorf("process profile: caught %v, want %v", got, want)
	}
	o, err = replay(Point{Length: Lengths[0], Params: clean(standin.Uniform, 4, 20)})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := o.Alarms, 0; got != want {
		t.Errorf("clean: %d false alarms, want %d", got, want)
	}
	if got, want := o.Clean, 6; got != want {
		t.Errorf("clean: %d series judged, want %d", got, want)
	}
}

// Ensure slowest picks the slowest rate from which every faster one is
// caught.
func TestSlowest(t *testing.T) {
	l := Length{Name: "x", Rates: []float64{1, 2, 3, 4}}
	m := map[key]*cell{
		{"x", 0, 1}: {n: 10, caught: 10},
		{"x", 0, 2}: {n: 10, caught: 5},
		{"x", 0, 3}: {n: 10, caught: 10},
		{"x", 0, 4}: {n: 10, caught: 10},
	}
	got, ok := slowest(m, l, 0, 0.95)
	if !ok || got != 3 {
		t.Fatalf("got %v (%v), want 3", got, ok)
	}
}
