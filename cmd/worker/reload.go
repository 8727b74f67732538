package main

import (
	"os"
	"os/signal"
	"sync"

	"github.com/sqlworker/worker"
)

// reloader reloads the worker's config file on each signal it is notified
// of (SIGHUP), as /-/reload does, until stop.
type reloader struct {
	sigs chan os.Signal
	wg   sync.WaitGroup
	done chan struct{}
}

// notifyReload starts catching sigs; a signal that arrives before serve is
// kept for it, so that a SIGHUP during start-up never kills the process.
func notifyReload(sigs []os.Signal) *reloader {
	r := &reloader{sigs: make(chan os.Signal, 1), done: make(chan struct{})}
	if len(sigs) > 0 {
		signal.Notify(r.sigs, sigs...)
	}
	return r
}

// serve reloads w with load on each signal until stop. Reload logs the
// outcome and serialises against /-/reload.
func (r *reloader) serve(w *worker.Worker, load func() (*worker.Config, error)) {
	r.wg.Go(func() {
		for {
			select {
			case <-r.sigs:
				_ = w.Reload(load)
			case <-r.done:
				return
			}
		}
	})
}

// stop stops catching the signals and waits for a reload in progress.
func (r *reloader) stop() {
	signal.Stop(r.sigs)
	close(r.done)
	r.wg.Wait()
}

// reloadFunc is what /-/reload reloads with: nil, serving no such path,
// without --web.enable-lifecycle.
func (f *flags) reloadFunc() func() (*worker.Config, error) {
	if !f.lifecycle {
		return nil
	}
	return f.load
}
