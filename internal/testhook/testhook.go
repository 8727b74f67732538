// Package testhook is the door between package worker and its public test
// package, jobtest: what jobtest needs of a Worker and the Worker's API
// should not offer. Package worker sets the hooks in its init.
package testhook

import (
	"context"
	"time"
)

// RunTick runs the tick of job scheduled at `at` on w, a *worker.Worker,
// and returns its worker.RunRecord (see jobtest.RunTick).
var RunTick func(ctx context.Context, w any, job string, at time.Time) (any, error)
