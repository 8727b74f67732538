// Package power is the detection-power study of the soak detector, run by
// bin/soakpower (soak/cmd/soakpower, `make soak-power`, docs/soak.md
// "Detection power"). It soaks the stand-in service (soak/internal/standin)
// at every leak rate × noise amplitude × soak length of the sweep, and at
// many clean shapes for false alarms, and writes what it measured as
// markdown (power.md) and JSON (power.json) into -dir.
//
// The sweep is not real-time: each soak is sampled at the soak's scrape
// interval (1 s) from the stand-in's series, rendered as exposition text,
// parsed by the harness's parser and judged by runner.Soak.Replay, which runs the
// very code a real soak runs after each scrape (recording, invariants,
// fail-fast test) and at its end (final verdicts). Thousands of soaks take
// a minute or two. Then, unless -real=false, a set of points is soaked for
// real: bin/standin served over HTTP and bin/soak started on it as a user
// would, some in real time and some with the stand-in's clock sped up, and
// their verdicts are set beside what the replay predicts. Run fails when
// a real soak ends otherwise than a correct detector ends it.
package power

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Run is the command bin/soakpower: it parses args, runs the studies they
// ask for, and writes their tables to stdout and into -dir. Its error maps
// to exit status 2.
func Run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("soakpower", flag.ContinueOnError)
	dir := fs.String("dir", "soak-report/power", "where power.md, power.json and the real soaks' reports go")
	seeds := fs.Int("seeds", 20, "soaks per leaking point of the sweep")
	cleanShort := fs.Int("clean-short", 100, "clean soaks per shape and noise at 60 s")
	cleanMid := fs.Int("clean-mid", 20, "clean soaks per shape and noise at 10 m")
	cleanLong := fs.Int("clean-long", 6, "clean soaks per shape and noise at 30 m")
	real := fs.Bool("real", true, "also soak some points for real through bin/soak and bin/standin")
	soakBin := fs.String("soak", "bin/soak", "bin/soak, for the real soaks")
	standinBin := fs.String("standin", "bin/standin", "bin/standin, for the real soaks")
	trend := fs.Bool("trend", true, "run the trend study (power.md)")
	cmp := compareFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	if cmp.on {
		if err := compareStudy(*dir, cmp, *real, *soakBin, *standinBin, stdout); err != nil {
			return err
		}
	}
	if !*trend {
		return nil
	}
	began := time.Now()
	st := &Study{Seeds: *seeds}
	var err error
	fmt.Fprintln(os.Stderr, "soakpower: replaying the leaking soaks")
	if st.Power, err = runAll(powerPoints(*seeds)); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "soakpower: replaying the clean soaks")
	if st.Clean, err = runAll(cleanPoints([]int{*cleanShort, *cleanMid, *cleanLong})); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "soakpower: replaying the fail-fast soaks")
	if st.FailFast, err = runAll(failFastPoints(*seeds)); err != nil {
		return err
	}
	st.ReplayTook = time.Since(began)
	if *real {
		fmt.Fprintln(os.Stderr, "soakpower: soaking the stand-in for real")
		if st.Real, err = runReal(*soakBin, *standinBin, filepath.Join(*dir, "real")); err != nil {
			return err
		}
	}
	st.Took = time.Since(began)

	f, err := os.Create(filepath.Join(*dir, "power.md"))
	if err != nil {
		return err
	}
	defer f.Close()
	st.Markdown(io.MultiWriter(f, stdout))
	if err := f.Close(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(st.Summary(), "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*dir, "power.json"), b, 0o644); err != nil {
		return err
	}
	return st.realWrong()
}

// realWrong is the study's own check: each real soak must end as a correct
// detector ends it.
func (st *Study) realWrong() error {
	wrong := 0
	for _, r := range st.Real {
		if r.Exit != r.Want {
			wrong++
			fmt.Fprintf(os.Stderr, "soakpower: %s: exit %d, want %d: %s\n", r.Soak, r.Exit, r.Want, r.Said)
		}
	}
	if wrong > 0 {
		return fmt.Errorf("%d of %d real soaks of the stand-in ended wrong", wrong, len(st.Real))
	}
	return nil
}
