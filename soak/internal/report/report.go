// Package report writes what a soak found into a directory: report.json
// (every sample, every verdict and its statistics), samples.csv (one row per
// scrape, one column per series), report.html (one self-contained page
// with a chart per series) and summary.txt (the per-series table that the
// command also prints: noise measured, tolerance that follows, growth seen,
// verdict).
package report

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/sqlworker/worker/soak/internal/detect"
	"github.com/sqlworker/worker/soak/internal/invariant"
	"github.com/sqlworker/worker/soak/internal/origin"
	"github.com/sqlworker/worker/soak/internal/runner"
	"github.com/sqlworker/worker/soak/internal/series"
)

// File names written into the report directory.
const (
	JSONFile = "report.json"
	CSVFile  = "samples.csv"
	HTMLFile = "report.html"
	TextFile = "summary.txt"
)

// Meta describes the run beyond what the soak itself recorded.
type Meta struct {
	RunID   string   // identifies the run in alerts and artifacts
	Target  string   // the metrics URL
	Command []string // the command soaked, when the harness started it
	// Origins is where the leaks come from, from the target's profiles;
	// nil when none were looked for.
	Origins *origin.Result
}

// Report is the content of report.json.
type Report struct {
	RunID         string             `json:"run_id"`
	Target        string             `json:"target"`
	Command       []string           `json:"command,omitempty"`
	Started       time.Time          `json:"started"`
	Elapsed       float64            `json:"elapsed_seconds"`
	Duration      float64            `json:"duration_seconds"`
	Interval      float64            `json:"interval_seconds"`
	Warmup        float64            `json:"warmup_seconds"`
	FailFast      bool               `json:"fail_fast"`
	StoppedEarly  bool               `json:"stopped_early"`
	Status        runner.Status      `json:"status"` // steady, leak or error
	Verdict       string             `json:"verdict"`
	Error         string             `json:"error,omitempty"`
	Scrapes       int                `json:"scrapes"`
	FailedScrapes int                `json:"failed_scrapes"`
	Missing       []string           `json:"missing"`
	Leaking       []string           `json:"leaking"`
	Named         []string           `json:"named"` // leaking series and series of broken rules
	Invariants    []invariant.Result `json:"invariants"`
	Series        []Series           `json:"series"`
	// Origins lists, for each leaking series, the call sites that grew,
	// or says why none is given.
	Origins *origin.Result `json:"origins,omitempty"`
	// Like says what makes this soak comparable with another (like.go),
	// Work holds the counters of the work done (CPU, job runs).
	Like *Like        `json:"like,omitempty"`
	Work []WorkSeries `json:"work,omitempty"`
}

// Series is one watched series in report.json.
type Series struct {
	series.Series
	Kind detect.Kind `json:"kind"`
	// Floor is the least tolerance; Fixed and Tolerance are set when
	// --tolerance replaced the one from the noise. The tolerance in effect
	// is Verdict.Allowed.
	Floor        float64        `json:"floor,omitempty"`
	Fixed        bool           `json:"fixed,omitempty"`
	Tolerance    float64        `json:"tolerance,omitempty"`
	Why          string         `json:"tolerance_why"`
	SlopePerHour float64        `json:"slope_per_hour"`
	Verdict      detect.Verdict `json:"verdict"`
	Samples      [][2]float64   `json:"samples"` // [seconds since start, value]
}

// New builds the Report of res.
func New(res *runner.Result, meta Meta) *Report {
	r := &Report{
		RunID:         meta.RunID,
		Target:        meta.Target,
		Command:       meta.Command,
		Started:       res.Start.UTC(),
		Elapsed:       res.Elapsed.Seconds(),
		Duration:      res.Config.Duration.Seconds(),
		Interval:      res.Config.Interval.Seconds(),
		Warmup:        res.Config.Warmup.Seconds(),
		FailFast:      res.Config.FailFast,
		StoppedEarly:  res.StoppedEarly,
		Status:        res.Status(),
		Verdict:       res.Sentence(),
		Scrapes:       res.Scrapes,
		FailedScrapes: res.Failures,
		Missing:       nonNil(res.Recording.Missing()),
		Named:         nonNil(res.SeriesNames()),
		Invariants:    res.Invariants,
		Leaking:       []string{},
		Origins:       meta.Origins,
		Like:          likeOf(res, meta.Command),
		Work:          workOf(res),
	}
	if res.Err != nil {
		r.Error = res.Err.Error()
	}
	for _, l := range res.Leaks() {
		r.Leaking = append(r.Leaking, l.Series)
	}
	for _, s := range res.Recording.Series() {
		v := res.Verdicts[s.Key]
		rs := Series{
			Series:       *s,
			Kind:         s.Spec.Kind,
			Floor:        s.Spec.Floor,
			Fixed:        s.Spec.Fixed,
			Tolerance:    s.Spec.Tolerance,
			Why:          s.Spec.Why,
			SlopePerHour: v.SlopePerHour(),
			Verdict:      v,
			Samples:      make([][2]float64, len(s.T)),
		}
		for i := range s.T {
			rs.Samples[i] = [2]float64{round3(s.T[i]), s.V[i]}
		}
		r.Series = append(r.Series, rs)
	}
	return r
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// Load reads the report.json in dir, so that its page can be drawn again.
func Load(dir string) (*Report, error) {
	b, err := os.ReadFile(filepath.Join(dir, JSONFile))
	if err != nil {
		return nil, fmt.Errorf("cannot load report: %w", err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("cannot load report: %w", err)
	}
	return &r, nil
}

// Write writes report.json, samples.csv and report.html into dir, creating
// it if needed.
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cannot create report dir: %w", err)
	}
	for _, f := range []struct {
		name  string
		write func(io.Writer) error
	}{
		{JSONFile, r.WriteJSON},
		{CSVFile, r.WriteCSV},
		{HTMLFile, r.WriteHTML},
		{TextFile, r.WriteText},
	} {
		if err := writeFile(filepath.Join(dir, f.name), f.write); err != nil {
			return err
		}
	}
	return nil
}

// writeFile writes through a temporary file and renames it, so that a
// report dir never holds half a report.
func writeFile(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	return nil
}

// WriteJSON writes report.json.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	return enc.Encode(r)
}

// WriteCSV writes samples.csv: a row per scrape time, a column per series,
// empty where a series had no sample.
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	header := []string{"t_seconds", "phase"}
	times := map[float64]bool{}
	var order []float64
	cols := make([]map[float64]float64, len(r.Series))
	for i, s := range r.Series {
		header = append(header, s.Key)
		cols[i] = make(map[float64]float64, len(s.Samples))
		for _, p := range s.Samples {
			cols[i][p[0]] = p[1]
			if !times[p[0]] {
				times[p[0]] = true
				order = append(order, p[0])
			}
		}
	}
	if err := cw.Write(header); err != nil {
		return err
	}
	slices.Sort(order)
	row := make([]string, len(header))
	for _, t := range order {
		row[0] = strconv.FormatFloat(t, 'f', 3, 64)
		row[1] = "soak"
		if t < r.Warmup {
			row[1] = "warmup"
		}
		for i := range r.Series {
			row[2+i] = ""
			if v, ok := cols[i][t]; ok {
				row[2+i] = strconv.FormatFloat(v, 'g', -1, 64)
			}
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
