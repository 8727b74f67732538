// Command standin serves the metrics of a service that leaks at a chosen
// rate under noise of a chosen amplitude, so that bin/soak can be measured
// against a known answer (docs/soak.md, "Detection power").
//
//	standin --listen 127.0.0.1:19900 --leak-series process_open_fds --leak-rate 0.2 --noise 2
//
// Every count series (FDs, goroutines, connections, statements) carries the
// same noise; memory series swing like a GC heap. With --profile process
// only process_open_fds and process_resident_memory_bytes are exposed, as
// by a non-Go service. --speed runs the stand-in's clock faster than the
// wall clock, for soaks compressed in time (scrape --speed times as often).
// It exits 0 on SIGTERM or SIGINT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sqlworker/worker/soak/internal/standin"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "standin:", err)
		os.Exit(2)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("standin", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:19900", "address to serve /metrics on")
	profile := fs.String("profile", "go", "series exposed: go (FDs, goroutines, connections, statements, memory) or process (process_open_fds and process_resident_memory_bytes only)")
	leakSeries := fs.String("leak-series", "process_open_fds", "the series that leaks")
	leakRate := fs.Float64("leak-rate", 0, "leak rate, units (or bytes) per second")
	leakFrom := fs.Float64("leak-from", 0, "seconds after start when the leak begins")
	noise := fs.Float64("noise", 0, "peak-to-peak amplitude of the count series' noise")
	shape := fs.String("shape", "uniform", "noise shape: uniform, sawtooth, bursts, walk, warmup-growth, gc")
	period := fs.Float64("period", 20, "period of sawtooth, bursts and gc, in seconds")
	memNoise := fs.Float64("mem-noise", 2<<20, "bytes the memory series swing by")
	seed := fs.Uint64("seed", 1, "seed of the noise")
	stepSeries := fs.String("step-series", "", "the series that holds --step more than its level all along")
	step := fs.Float64("step", 0, "how many more units --step-series holds at steady state")
	cpuPerRun := fs.Float64("cpu-per-run", 0, "CPU seconds per job run; exposes process_cpu_seconds_total and worker_job_runs_total when above 0")
	runsPerSec := fs.Float64("runs-per-second", 7, "job runs per second")
	cpuJitter := fs.Float64("cpu-jitter", 0.5, "relative spread of each second's CPU (0.5: ±50 %)")
	speed := fs.Float64("speed", 1, "how many times faster than the wall clock the stand-in's clock runs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	prof, err := standin.ParseProfile(*profile)
	if err != nil {
		return err
	}
	sh, err := standin.ParseShape(*shape)
	if err != nil {
		return err
	}
	srv := &standin.Server{Speed: *speed, Models: standin.Models(standin.Params{
		Profile: prof, LeakSeries: *leakSeries, Leak: *leakRate, LeakFrom: *leakFrom,
		Noise: *noise, Shape: sh, Period: *period, MemNoise: *memNoise, Seed: *seed,
		StepSeries: *stepSeries, Step: *step, CPUPerRun: *cpuPerRun, RunsPerSecond: *runsPerSec, CPUJitter: *cpuJitter,
	})}
	srv.Started(time.Now())

	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", srv)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
