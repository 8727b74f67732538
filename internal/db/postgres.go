package db

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/sqlworker/worker/internal/regularfile"
	"github.com/sqlworker/worker/internal/schema"
	"github.com/sqlworker/worker/sqlcount"
)

// This file is what the Handle does that is PostgreSQL's own: the URL, its
// checks and its masking, the application_name that tells the replicas
// apart on the server, the pool made of pgx's database/sql connector (not
// pgxpool's: each Connect and Close is then a real connection, which the
// counting sees), and the migrations (internal/schema's) on every open. The server owns its files, so there is no checkpoint and no file
// check; Health reads instead the last result of a check of the server that
// runs in the background while the handle is open (watch).

// Defaults of the PostgreSQL backend.
const (
	// ApplicationNamePrefix is the worker's name in application_name; the
	// replica id follows it.
	ApplicationNamePrefix = "worker-"
	// MaxApplicationName is the longest application_name the server keeps
	// (NAMEDATALEN-1): a longer one is truncated, and would then no longer
	// select this replica's backends in pg_stat_activity.
	MaxApplicationName = 63
	// DefaultConnectTimeout bounds a connection attempt when the URL sets
	// no connect_timeout: a server that does not answer must not hold the
	// handle's lock, and the retries behind it, for the kernel's TCP timeout.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultServerCheckInterval is how often an open handle checks that
	// its server answers, for Health: the time /readyz takes to notice a
	// server that went down, restarts or refuses connections, and to see it
	// back.
	DefaultServerCheckInterval = time.Second
	// DefaultServerCheckTimeout bounds one check: a server that does not
	// answer within it is unreachable (a hung server, a dead network path).
	DefaultServerCheckTimeout = 2 * time.Second
)

// ErrServerUnreachable is Health's error while the server of an open
// PostgreSQL handle does not answer its check: down, restarting, refusing
// connections (too many clients), or not answering in time.
var ErrServerUnreachable = errors.New("cannot reach postgres")

// ErrReplicaID is the error of a replica id that application_name cannot
// carry.
var ErrReplicaID = errors.New("want 1 to 56 letters, digits, '.', '_' or '-', starting with a letter or digit")

var replicaIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,55}$`)

// CheckReplicaID returns ErrReplicaID when id cannot be a replica id.
func CheckReplicaID(id string) error {
	if !replicaIDRE.MatchString(id) {
		return fmt.Errorf("%w, got %q", ErrReplicaID, id)
	}
	return nil
}

// DefaultReplicaID returns <hostname>-<pid>, shortened so that
// application_name holds it whole, with what a replica id cannot hold
// replaced by '-'.
func DefaultReplicaID() string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r < 128 && (r == '.' || r == '_' || r == '-' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			return r
		}
		return '-'
	}, host)
	pid := strconv.Itoa(os.Getpid())
	if n := MaxApplicationName - len(ApplicationNamePrefix) - len(pid) - 1; len(host) > n {
		host = host[:n]
	}
	if host == "" || CheckReplicaID(host) != nil {
		host = "host" + host
	}
	return host + "-" + pid
}

// ApplicationName returns the application_name of the replica id.
func ApplicationName(replicaID string) string { return ApplicationNamePrefix + replicaID }

// urlParams are the URL parameters the worker passes on: pgx's and libpq's
// own connection settings, and the session settings an operator may want
// per URL. Another parameter would reach the server as a run-time setting
// and fail every connect (or set something nobody meant to), so CheckURL
// refuses it. application_name is the worker's (see ApplicationName).
var urlParams = map[string]bool{
	"host": true, "port": true, "dbname": true, "database": true, "user": true, "password": true,
	"passfile": true, "connect_timeout": true, "sslmode": true, "sslkey": true, "sslcert": true,
	"sslcertmode": true, "sslrootcert": true, "sslnegotiation": true, "sslpassword": true, "sslsni": true,
	"krbspn": true, "krbsrvname": true, "target_session_attrs": true, "service": true, "servicefile": true,
	"min_protocol_version": true, "max_protocol_version": true, "channel_binding": true, "require_auth": true,
	"statement_cache_capacity": true, "description_cache_capacity": true, "default_query_exec_mode": true,
	"search_path": true, "statement_timeout": true, "lock_timeout": true,
	"idle_in_transaction_session_timeout": true, "timezone": true, "options": true,
}

// CheckURL returns an error, without the password, when s is not a
// postgres:// or postgresql:// URL that pgx parses, or has a parameter
// urlParams does not list.
func CheckURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL: %s: want postgres://user@host:5432/dbname", urlReason(s, err))
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return fmt.Errorf("scheme %q: want postgres:// or postgresql://", u.Scheme)
	}
	if u.Opaque != "" {
		return errors.New("want postgres://host/dbname, with the two slashes")
	}
	if u.Fragment != "" {
		return errors.New("must not have a #fragment")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return errors.New("the query string does not parse")
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch {
		case k == "application_name":
			return errors.New("parameter application_name: the worker sets it (worker-<replica id>); set database.replica_id or --db.replica-id instead")
		case !urlParams[k]:
			return fmt.Errorf("unknown parameter %q", k)
		case len(q[k]) > 1:
			return fmt.Errorf("parameter %q given %d times", k, len(q[k]))
		}
	}
	if _, err := pgx.ParseConfig(s); err != nil {
		return fmt.Errorf("%s", oneLineErr(err))
	}
	return nil
}

// urlReason is why url.Parse refused s, without s: url's errors quote the
// URL, password and all. An escape that is in the user or password part
// is not quoted either.
func urlReason(s string, err error) string {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return "cannot parse"
	}
	var esc url.EscapeError
	if errors.As(ue.Err, &esc) && strings.Contains(userInfo(s), string(esc)) {
		return "invalid URL escape in the user or password (write % as %25)"
	}
	return ue.Err.Error()
}

// userInfo is the user:password part of a URL string, or "".
func userInfo(s string) string {
	_, rest, ok := strings.Cut(s, "://")
	if !ok {
		return ""
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		return rest[:i]
	}
	return ""
}

// SecretParams are the URL parameters that carry a secret: the ones pgx
// itself redacts in its errors (pgconn's parse_url.go), the password and
// the passphrase of the TLS client key.
var SecretParams = []string{"password", "sslpassword"}

// RedactURL returns s with its secrets masked, in the user info and in
// every SecretParams parameter (whose key may be percent-encoded: the query
// is decoded first, as pgx does), for logs, --config.check and the landing
// page. A string that is not a URL is masked whole.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return "(unparsable URL)"
	}
	masked := false
	for _, k := range SecretParams {
		if q.Has(k) {
			q.Set(k, "xxxxx")
			masked = true
		}
	}
	if masked {
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// URLSecrets returns what of SecretParams s carries, in that order: a
// password in the user info counts as "password". It returns nil for a
// string that is not a URL.
func URLSecrets(s string) []string {
	u, err := url.Parse(s)
	if err != nil {
		return nil
	}
	q, _ := url.ParseQuery(u.RawQuery)
	var out []string
	for _, k := range SecretParams {
		_, inUser := u.User.Password()
		if q.Has(k) || k == "password" && inUser {
			out = append(out, k)
		}
	}
	return out
}

func oneLineErr(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

// postgres is the PostgreSQL backend of a Handle.
type postgres struct {
	h *Handle
	// conns counts the connections of the pool open now, for Close's wait;
	// a new one per open, so that a dropped pool's connections do not count.
	conns *sqlcount.Counter

	// health is the last check's error (nil: the server answered), which
	// Health reads without blocking; set by watch.
	health    atomic.Pointer[error]
	stopWatch context.CancelFunc
	watching  sync.WaitGroup
}

var _ backend = (*postgres)(nil)

// pgConfig returns the pgx configuration of the handle's URL: its
// application_name, the connect timeout, and the password of the password
// file read at each connect, so that a rotated one is picked up.
func (p *postgres) pgConfig() (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(p.h.cfg.URL)
	if err != nil {
		return nil, errors.New(oneLineErr(err))
	}
	cfg.RuntimeParams["application_name"] = ApplicationName(p.h.cfg.ReplicaID)
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	return cfg, nil
}

// connector returns pgx's database/sql connector for cfg: not pgxpool's,
// so that each Connect and Close is a connection of the server's.
func (p *postgres) connector(cfg *pgx.ConnConfig) driver.Connector {
	return stdlib.GetConnector(*cfg, stdlib.OptionBeforeConnect(p.beforeConnect))
}

// beforeConnect reads the password file, when there is one.
func (p *postgres) beforeConnect(_ context.Context, cfg *pgx.ConnConfig) error {
	if p.h.cfg.PasswordFile == "" {
		return nil
	}
	pw, err := ReadPasswordFile(p.h.cfg.PasswordFile)
	if err != nil {
		return err
	}
	cfg.Password = pw
	return nil
}

// ExecPostgres runs query, one or more statements, on a connection of d (a
// PostgreSQL pool) in one transaction, and returns the rows that its
// INSERT, UPDATE, DELETE and MERGE statements changed, summed over the
// statements: database/sql's RowsAffected is the last statement's only.
// The statements go in one simple-protocol round trip, as pgx sends a query
// without arguments; the rows of a SELECT are read and dropped.
func ExecPostgres(ctx context.Context, d *sql.DB, query string) (int64, error) {
	conn, err := d.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	var n int64
	err = conn.Raw(func(dc any) error {
		for {
			u, ok := dc.(interface{ Unwrap() driver.Conn })
			if !ok {
				break
			}
			dc = u.Unwrap()
		}
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("cannot run PostgreSQL SQL on a %T connection", dc)
		}
		tx, err := sc.Conn().Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx) //nolint:errcheck // after Commit: ErrTxClosed
		mrr := sc.Conn().PgConn().Exec(ctx, query)
		for mrr.NextResult() {
			rr := mrr.ResultReader()
			for rr.NextRow() {
			}
			tag, err := rr.Close()
			if err != nil {
				mrr.Close()
				return err
			}
			if tag.Insert() || tag.Update() || tag.Delete() || strings.HasPrefix(tag.String(), "MERGE ") {
				n += tag.RowsAffected()
			}
		}
		if err := mrr.Close(); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// MaxPasswordLine bounds the first line of a password file, which is all
// ReadPasswordFile reads of it.
const MaxPasswordLine = 4096

// ReadPasswordFile returns the password in the file at path: its first
// line, without the line end. Only a regular file is read (a FIFO or a
// device is refused, regularfile.ErrNotRegular), and no more than its first
// MaxPasswordLine bytes and a line end.
func ReadPasswordFile(path string) (string, error) {
	// Not os.ReadFile: /dev/zero would never end, a FIFO block for good.
	b, err := regularfile.Read(path, MaxPasswordLine+1)
	if err != nil {
		return "", fmt.Errorf("cannot read password file: %w", err)
	}
	pw, _, found := strings.Cut(string(b), "\n")
	if !found && len(b) > MaxPasswordLine {
		return "", fmt.Errorf("password file %s: first line longer than %d bytes", path, MaxPasswordLine)
	}
	pw = strings.TrimSuffix(pw, "\r")
	if pw == "" {
		return "", fmt.Errorf("password file %s is empty", path)
	}
	return pw, nil
}

func (p *postgres) open(ctx context.Context) (_ *sql.DB, err error) {
	where := p.h.where
	cfg, err := p.pgConfig()
	if err != nil {
		return nil, fmt.Errorf("cannot open database %s: %w", where, err)
	}
	conns := new(sqlcount.Counter)
	// The inner counter is this pool's, for Close; the outer one the
	// process's, for the metrics.
	db := sql.OpenDB(sqlcount.NewConnector(sqlcount.NewConnector(p.connector(cfg), conns), &accounting))
	defer func() {
		if err != nil {
			db.Close()
		}
	}()
	db.SetMaxOpenConns(p.h.cfg.MaxOpenConns)
	db.SetMaxIdleConns(p.h.cfg.MaxOpenConns)
	if err := db.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("cannot open database %s: %s", where, oneLineErr(err))
	}
	if err := schema.MigratePostgres(ctx, db); err != nil {
		return nil, fmt.Errorf("cannot migrate database %s: %s", where, oneLineErr(err))
	}
	p.stop() // a watch of an earlier pool, were there one
	p.conns = conns
	p.health.Store(nil)
	wctx, cancel := context.WithCancel(context.Background())
	p.stopWatch = cancel
	p.watching.Go(func() { p.watch(wctx, db, conns) })
	return db, nil
}

// watch checks the server every DefaultServerCheckInterval until ctx is
// done, and keeps the result for Health. Reading the last result, rather
// than asking the server on each request, keeps /readyz from ever waiting
// on a server that hangs.
func (p *postgres) watch(ctx context.Context, d *sql.DB, conns *sqlcount.Counter) {
	t := time.NewTicker(DefaultServerCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.check(ctx, d, conns)
	}
}

// check asks the server for the number of this replica's backends, one
// round trip on a pool connection, bounded by DefaultServerCheckTimeout.
//
// database/sql discards a connection that pgx reports broken
// (driver.ErrBadConn, from ResetSession's ping or a query that failed before
// it was sent), but only the one it picks, the one returned last: after a
// restart or a pg_terminate_backend, connections that stay idle below it
// would be counted open for ever, dead. So when the server has fewer of
// our backends than the pool has connections open, or the check failed,
// the idle connections are closed; those in use are discarded as they come
// back. A check that fails on a connection the server dropped is tried
// once more on a new connection before the server counts as unreachable:
// a dropped connection alone is no outage.
//
// While every connection of the pool is in use, the check is not run: it
// would wait for a connection rather than for the server, and the jobs
// holding them see the server themselves. The last result stands.
func (p *postgres) check(ctx context.Context, d *sql.DB, conns *sqlcount.Counter) {
	var err error
	for attempt := 1; attempt <= 2; attempt++ {
		if s := d.Stats(); s.InUse >= s.MaxOpenConnections {
			return
		}
		var server, client uint64
		server, client, err = p.count(ctx, d, conns)
		if ctx.Err() != nil {
			return // closing
		}
		if err == nil {
			if server < client {
				p.h.logger.Warn("The server dropped connections of this replica; closing the idle ones", "database", p.h.where, "server", server, "client", client)
				p.dropIdle(d)
			}
			break
		}
		p.dropIdle(d)
	}
	if err != nil {
		err = fmt.Errorf("%w: %s", ErrServerUnreachable, oneLineErr(err))
	}
	if prev := p.health.Swap(&err); (prev == nil || *prev == nil) != (err == nil) {
		if err != nil {
			p.h.logger.Warn("Database server unreachable; not ready", "database", p.h.where, "err", err)
		} else {
			p.h.logger.Info("Database server reachable again", "database", p.h.where)
		}
	}
}

// OwnBackends selects this replica's client backends in pg_stat_activity,
// $1 being its application_name: those of its database and user too, as
// the same replica id may be used against another database of the server
// (a staging and a production worker, say), whose backends are not this
// pool's.
const OwnBackends = `application_name = $1 AND datname = current_database() AND usename = session_user AND backend_type = 'client backend'`

// count returns this replica's backends in pg_stat_activity and the pool's
// open connections, counted before and after the query, the smaller: a
// connection opened or closed while the query ran is then not taken for
// one the server dropped.
func (p *postgres) count(ctx context.Context, d *sql.DB, conns *sqlcount.Counter) (server, client uint64, err error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultServerCheckTimeout)
	defer cancel()
	before := conns.Counts().ConnectionsOpen()
	err = d.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity WHERE `+OwnBackends, p.h.ApplicationName()).Scan(&server)
	return server, min(before, conns.Counts().ConnectionsOpen()), err
}

// dropIdle closes the pool's idle connections.
func (p *postgres) dropIdle(d *sql.DB) {
	d.SetMaxIdleConns(0)
	d.SetMaxIdleConns(p.h.cfg.MaxOpenConns)
}

// stop stops watch; called under the Handle's lock, before the pool closes.
func (p *postgres) stop() {
	if p.stopWatch != nil {
		p.stopWatch()
		p.watching.Wait()
		p.stopWatch = nil
	}
}

// checkpoint does nothing: the server owns its WAL.
func (p *postgres) checkpoint(context.Context, *sql.DB) error { return nil }

// checkFiles returns the last server check's error: the server owns its
// files.
func (p *postgres) checkFiles(*handleState) error {
	if err := p.health.Load(); err != nil {
		return *err
	}
	return nil
}

// pending reports the connections of the pool opened last that are open.
func (p *postgres) pending() func() int64 {
	c := p.conns
	if c == nil {
		return func() int64 { return 0 }
	}
	return func() int64 { return int64(c.Counts().ConnectionsOpen()) }
}

// IsPostgres reports whether d is a pool of pgx's driver, through the
// counting wrappers: a Handle's opened on a URL.
func IsPostgres(d *sql.DB) bool { return isPostgres(d) }

func isPostgres(d *sql.DB) bool {
	drv := d.Driver()
	for {
		u, ok := drv.(interface{ Unwrap() driver.Driver })
		if !ok {
			break
		}
		drv = u.Unwrap()
	}
	_, ok := drv.(*stdlib.Driver)
	return ok
}
