// Package scrape fetches one Prometheus text exposition over HTTP and
// returns its samples, or, Combined, those of several replicas at once, each
// labelled with its replica.
package scrape

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sqlworker/worker/soak/internal/invariant"
)

// DefaultTimeout bounds one scrape.
const DefaultTimeout = 5 * time.Second

// maxBody bounds the exposition read, so a broken target cannot make the
// harness itself grow.
const maxBody = 32 << 20

// acceptHeader asks for the classic text format, the one TextParser reads.
const acceptHeader = `text/plain;version=0.0.4;q=1,*/*;q=0.1`

// ErrStatus is returned, wrapped, when the target answers with a status
// other than 200.
var ErrStatus = errors.New("unexpected HTTP status")

// Scraper fetches and parses one metrics URL.
type Scraper struct {
	URL     string
	Client  *http.Client
	Timeout time.Duration // per scrape; DefaultTimeout when zero
}

// New returns a Scraper for url with its own HTTP client.
func New(url string) *Scraper {
	return &Scraper{
		URL:     url,
		Client:  &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: false}},
		Timeout: DefaultTimeout,
	}
}

// Close releases the Scraper's idle connections.
func (s *Scraper) Close() {
	s.Client.CloseIdleConnections()
}

// Scrape fetches the URL once and returns every sample in it. Histogram and
// summary families are expanded into their _bucket, _sum and _count samples.
func (s *Scraper) Scrape(ctx context.Context) (model.Vector, error) {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot scrape %s: %w", s.URL, err)
	}
	req.Header.Set("Accept", acceptHeader)
	resp, err := s.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot scrape %s: %w", s.URL, timedOut(parent, ctx, timeout, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
		return nil, fmt.Errorf("cannot scrape %s: %w %s", s.URL, ErrStatus, resp.Status)
	}
	if resp.ContentLength > maxBody {
		return nil, fmt.Errorf("cannot scrape %s: %w (Content-Length %d)", s.URL, ErrBodyTooLarge, resp.ContentLength)
	}
	body := &limitedBody{r: resp.Body, left: maxBody}
	vec, err := Parse(body)
	switch {
	case body.over:
		return nil, fmt.Errorf("cannot scrape %s: %w", s.URL, ErrBodyTooLarge)
	case err != nil:
		return nil, fmt.Errorf("cannot scrape %s: %w", s.URL, timedOut(parent, ctx, timeout, err))
	}
	return vec, nil
}

// ErrBodyTooLarge is returned, wrapped, when an exposition is longer than
// the harness reads.
var ErrBodyTooLarge = fmt.Errorf("body longer than %d MiB, the limit", maxBody>>20)

// timedOut says that a scrape timed out, rather than the bare context
// error, when its own timeout (not the caller's) cut it.
func timedOut(parent, ctx context.Context, timeout time.Duration, err error) error {
	if parent.Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("timed out after %s: %w", timeout, err)
	}
	return err
}

// limitedBody reads at most left bytes and notes whether there was more,
// so that a cut exposition is reported as too large, not as a parse error.
type limitedBody struct {
	r    io.Reader
	left int64
	over bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		var one [1]byte
		if n, _ := b.r.Read(one[:]); n > 0 {
			b.over = true
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// Parse reads a text exposition and returns its samples.
func Parse(r io.Reader) (model.Vector, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("cannot parse exposition: %w", err)
	}
	opts := &expfmt.DecodeOptions{Timestamp: model.Now()}
	var all model.Vector
	for _, f := range fams {
		vec, err := expfmt.ExtractSamples(opts, f)
		if err != nil {
			return nil, fmt.Errorf("cannot read family %s: %w", f.GetName(), err)
		}
		all = append(all, vec...)
	}
	return all, nil
}

// Source is anything that yields one exposition's samples: a Scraper, or
// the server's own counts (package pgprobe).
type Source interface {
	Scrape(ctx context.Context) (model.Vector, error)
}

// Part is one Source of a Combined scrape, with the replica its samples
// are labelled with; "" leaves them as they are.
type Part struct {
	Replica string
	Source  Source
}

// Combined scrapes several sources at once, as one scrape: the replicas of
// a soak on PostgreSQL and the server. Each replica's samples get the
// invariant.ReplicaLabel label, and its backends as the server sees them
// (worker_db_server_connections, by state) are summed into
// invariant.ServerSeries. A failure of any source fails the scrape.
type Combined struct {
	Parts []Part
}

// Scrape implements runner.Scraper.
func (c *Combined) Scrape(ctx context.Context) (model.Vector, error) {
	vecs := make([]model.Vector, len(c.Parts))
	errs := make([]error, len(c.Parts))
	var wg sync.WaitGroup
	for i, p := range c.Parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vecs[i], errs[i] = p.Source.Scrape(ctx)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var all model.Vector
	for i, p := range c.Parts {
		all = append(all, Label(vecs[i], p.Replica)...)
	}
	return all, nil
}

// Label returns vec with every sample labelled replica, and the sum over
// state of worker_db_server_connections added as invariant.ServerSeries
// when vec has it. With replica "" vec is returned as it is.
func Label(vec model.Vector, replica string) model.Vector {
	if replica == "" {
		return vec
	}
	out := make(model.Vector, 0, len(vec)+1)
	var server float64
	found := false
	var ts model.Time
	for _, s := range vec {
		m := s.Metric.Clone()
		m[invariant.ReplicaLabel] = model.LabelValue(replica)
		out = append(out, &model.Sample{Metric: m, Value: s.Value, Timestamp: s.Timestamp})
		if s.Metric[model.MetricNameLabel] == "worker_db_server_connections" {
			server += float64(s.Value)
			found, ts = true, s.Timestamp
		}
	}
	if found {
		out = append(out, &model.Sample{
			Metric:    model.Metric{model.MetricNameLabel: invariant.ServerSeries, invariant.ReplicaLabel: model.LabelValue(replica)},
			Value:     model.SampleValue(server),
			Timestamp: ts,
		})
	}
	return out
}
