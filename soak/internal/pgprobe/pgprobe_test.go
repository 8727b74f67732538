package pgprobe_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/goleak"

	"github.com/sqlworker/worker/internal/pgtest"
	"github.com/sqlworker/worker/soak/internal/pgprobe"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func backends(t *testing.T, p *pgprobe.Probe) float64 {
	t.Helper()
	vec, err := p.Scrape(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(vec) != 1 || vec[0].Metric["__name__"] != pgprobe.Backends {
		t.Fatalf("got %v, want one sample of %s", vec, pgprobe.Backends)
	}
	return float64(vec[0].Value)
}

// Ensure the probe counts the server's client backends, its own excepted,
// on a real server.
func TestProbe_Scrape(t *testing.T) {
	srv := pgtest.New(t)
	srv.Start(t)
	p, err := pgprobe.Open(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if got, want := backends(t, p), 0.0; got != want {
		t.Fatalf("idle server: got %v backends, want %v", got, want)
	}

	cfg, err := pgx.ParseConfig(srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(stdlib.GetConnector(*cfg))
	defer db.Close()
	conns := make([]*sql.Conn, 2)
	for i := range conns {
		if conns[i], err = db.Conn(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := conns[i].PingContext(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := backends(t, p), 2.0; got != want {
		t.Fatalf("with 2 connections: got %v backends, want %v", got, want)
	}
	for _, c := range conns {
		_ = c.Close()
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: got %v, want nil", err)
	}
}

// Ensure a URL that does not parse is refused at Open.
func TestOpen_BadURL(t *testing.T) {
	if _, err := pgprobe.Open("postgres://%zz"); err == nil {
		t.Fatal("got nil, want an error")
	}
}
