// Package pgprobe reads the server's own count of backends from
// pg_stat_activity, as a scrape source of the soak: the replicas' counts of
// their connections are the client's word, this is the server's.
package pgprobe

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/prometheus/common/model"
)

// ApplicationName is the probe's own application_name; its backend is not
// counted.
const ApplicationName = "soak-probe"

// Backends is the metric the probe yields: client backends on the server,
// the probe's own excepted.
const Backends = "soak_server_backends"

// DefaultTimeout bounds one query.
const DefaultTimeout = 5 * time.Second

// Probe holds one connection to the server. Open it, Scrape it, Close it.
type Probe struct {
	db *sql.DB
}

// Open returns a Probe of the server at url (a postgres:// URL or a
// key=value DSN). It does not connect until the first Scrape.
func Open(url string) (*Probe, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("cannot parse the PostgreSQL URL: %w", err)
	}
	cfg.RuntimeParams["application_name"] = ApplicationName
	db := sql.OpenDB(stdlib.GetConnector(*cfg))
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	return &Probe{db: db}, nil
}

// Close closes the probe's connection. It is safe to call twice.
func (p *Probe) Close() error { return p.db.Close() }

// Scrape returns the server's client backends, the probe's own excepted,
// as one sample of Backends.
func (p *Probe) Scrape(ctx context.Context) (model.Vector, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	var n int64
	err := p.db.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`).Scan(&n)
	if err != nil {
		return nil, fmt.Errorf("cannot read pg_stat_activity: %w", err)
	}
	return model.Vector{{
		Metric:    model.Metric{model.MetricNameLabel: Backends},
		Value:     model.SampleValue(n),
		Timestamp: model.Now(),
	}}, nil
}
