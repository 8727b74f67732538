// The Node.js peer of bench/cmd/peers: the jobs of JOBS (JSON: [{name,
// schedule, sql}]) on better-sqlite3 with the worker's pragmas, scheduled by
// node-cron, each run one transaction then one job_runs row, counted and
// timed in prom-client metrics served on 127.0.0.1:PORT/metrics with the
// default process and Node.js metrics.
'use strict';
const http = require('node:http');
const Database = require('better-sqlite3');
const cron = require('node-cron');
const client = require('prom-client');

const db = new Database(process.env.DB);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
db.pragma('busy_timeout = 5000');
db.pragma('foreign_keys = ON');
db.exec(`CREATE TABLE IF NOT EXISTS job_runs (id INTEGER PRIMARY KEY, job TEXT NOT NULL,
  scheduled_at TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT NOT NULL,
  result TEXT NOT NULL, error TEXT NOT NULL DEFAULT '', rows_affected INTEGER NOT NULL DEFAULT 0)`);
const insertRun = db.prepare(`INSERT INTO job_runs
  (job, scheduled_at, started_at, ended_at, result, error, rows_affected) VALUES (?, ?, ?, ?, ?, ?, ?)`);

const register = new client.Registry();
client.collectDefaultMetrics({ register });
const runs = new client.Counter({ name: 'peer_job_runs_total', help: 'Finished job runs by result.',
  labelNames: ['job', 'result'], registers: [register] });
const duration = new client.Histogram({ name: 'peer_job_duration_seconds', help: 'Wall time of job runs.',
  labelNames: ['job'], buckets: [.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300],
  registers: [register] });

for (const j of JSON.parse(process.env.JOBS)) {
  const tx = db.transaction(() => { const before = db.prepare('SELECT total_changes() AS n').get().n;
    db.exec(j.sql); return db.prepare('SELECT total_changes() AS n').get().n - before; });
  cron.schedule(j.schedule, () => {
    const started = new Date();
    let result = 'success', error = '', rows = 0;
    try { rows = tx.immediate(); } catch (e) { result = 'failure'; error = String(e); }
    const ended = new Date();
    insertRun.run(j.name, started.toISOString(), started.toISOString(), ended.toISOString(), result, error, rows);
    runs.inc({ job: j.name, result });
    duration.observe({ job: j.name }, (ended - started) / 1000);
  });
}

http.createServer(async (req, res) => {
  if (req.url !== '/metrics') { res.statusCode = 404; res.end(); return; }
  res.setHeader('Content-Type', register.contentType);
  res.end(await register.metrics());
}).listen(Number(process.env.PORT), '127.0.0.1');
process.on('SIGTERM', () => { db.close(); process.exit(0); });
