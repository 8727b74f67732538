package report

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"

	"github.com/sqlworker/worker/soak/internal/runner"
)

// Like is what makes two soaks comparable, recorded in report.json: a
// comparison of unlike soaks (soak/internal/compare) names what differs.
type Like struct {
	// TargetVersion is the version and revision from worker_build_info,
	// "unknown" when the target does not expose it. It is what a
	// comparison across builds compares, so it is shown, never refused.
	TargetVersion string `json:"target_version"`
	// TargetGo is the Go version the target was built with (go_info).
	TargetGo string `json:"target_go_version"`
	// TargetBinary is the SHA-256 of the started command's executable,
	// "" under --target: the build's identity when it carries no version
	// (a plain go build).
	TargetBinary string `json:"target_binary_sha256,omitempty"`
	// ConfigHash is the SHA-256 of the config files named in the command
	// (the argument after a flag naming a config), "" when none.
	ConfigHash string   `json:"config_hash"`
	Duration   float64  `json:"duration_seconds"`
	Warmup     float64  `json:"warmup_seconds"`
	Interval   float64  `json:"interval_seconds"`
	Replicas   int      `json:"replicas"`
	Watch      []string `json:"watch"`
	Machine    Machine  `json:"machine"`
}

// Machine is the machine the soak ran on, as the harness saw it.
type Machine struct {
	Cores     int    `json:"cores"`
	CPU       string `json:"cpu"` // model name, from /proc/cpuinfo
	Kernel    string `json:"kernel"`
	Arch      string `json:"arch"`
	GoVersion string `json:"go_version"` // of the harness
	// Load is the machine's load average over 1, 5 and 15 minutes when
	// the soak ended: CPU time per unit of work rises on a busy machine.
	Load [3]float64 `json:"load_average"`
}

// ThisMachine describes the machine the harness runs on.
func ThisMachine() Machine {
	kernel := "unknown"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	m := Machine{Cores: runtime.NumCPU(), CPU: "unknown", Kernel: kernel, Arch: runtime.GOOS + "/" + runtime.GOARCH, GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		_, _ = fmt.Sscan(string(b), &m.Load[0], &m.Load[1], &m.Load[2])
	}
	return m
}

// likeOf returns the Like of a soak of command that found res.
func likeOf(res *runner.Result, command []string) *Like {
	l := &Like{
		TargetVersion: "unknown",
		TargetGo:      "unknown",
		ConfigHash:    ConfigHash(command),
		TargetBinary:  binaryHash(command),
		Duration:      res.Config.Duration.Seconds(),
		Warmup:        res.Config.Warmup.Seconds(),
		Interval:      res.Config.Interval.Seconds(),
		Replicas:      1,
		Machine:       ThisMachine(),
	}
	for _, w := range res.Config.Watch {
		l.Watch = append(l.Watch, w.Name)
	}
	replicas := map[string]bool{}
	for _, s := range res.Recording.Series() {
		if r, ok := s.Labels["replica"]; ok {
			replicas[r] = true
		}
	}
	l.Replicas = max(len(replicas), 1)
	if res.Work == nil {
		return l
	}
	for _, s := range res.Work.Series() {
		switch s.Name {
		case "worker_build_info":
			l.TargetVersion = strings.TrimSpace(s.Labels["version"] + " " + s.Labels["revision"])
		case "go_info":
			l.TargetGo = s.Labels["version"]
		}
	}
	return l
}

// ConfigHash returns the SHA-256 of the files named after a flag whose
// name mentions "config" in args (--config.file soak/worker-soak.yml, or
// --config.file=…), in order, or "" when there is none or one cannot be
// read. Other paths (the database, temporary dirs) differ between runs of
// the same soak and are left out.
func ConfigHash(args []string) string {
	h := sha256.New()
	found := false
	for i, a := range args {
		flag, val, hasVal := strings.Cut(a, "=")
		if !strings.HasPrefix(flag, "-") || !strings.Contains(flag, "config") {
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				continue
			}
			val = args[i+1]
		}
		b, err := os.ReadFile(val)
		if err != nil {
			continue
		}
		fmt.Fprintf(h, "%s\x00%d\x00", flag, len(b))
		h.Write(b)
		found = true
	}
	if !found {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}

// binaryHash returns the SHA-256 of command's executable, or "".
func binaryHash(command []string) string {
	if len(command) == 0 {
		return ""
	}
	path, err := exec.LookPath(command[0])
	if err != nil {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}

// WorkSeries is one series of series.Work in report.json: recorded, not
// judged.
type WorkSeries struct {
	Key     string            `json:"key"`
	Name    string            `json:"name"`
	Labels  map[string]string `json:"labels"`
	Samples [][2]float64      `json:"samples"` // [seconds since start, value]
}

// workOf returns the counters of res.Work (not the info series, whose
// labels are in Like).
func workOf(res *runner.Result) []WorkSeries {
	if res.Work == nil {
		return nil
	}
	var out []WorkSeries
	for _, s := range res.Work.Series() {
		if !slices.Contains([]string{"process_cpu_seconds_total", "worker_job_runs_total"}, s.Name) {
			continue
		}
		ws := WorkSeries{Key: s.Key, Name: s.Name, Labels: s.Labels, Samples: make([][2]float64, len(s.T))}
		for i := range s.T {
			ws.Samples[i] = [2]float64{round3(s.T[i]), s.V[i]}
		}
		out = append(out, ws)
	}
	return out
}

// WriteFile writes path through a temporary file and a rename, as the
// report's own files are written: for the files other packages add to a
// report dir (JUnit, Markdown, comparisons).
func WriteFile(path string, write func(io.Writer) error) error { return writeFile(path, write) }
