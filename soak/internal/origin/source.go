package origin

import "strings"

// Profile names the soak takes from a target's net/http/pprof: sqlcount's
// profiles of open handles, connections and prepared statements (served
// when the target's sqlcount records origins), and Go's own goroutine and
// heap profiles.
const (
	Handles   = "sqlcount.handles"
	Conns     = "sqlcount.conns"
	Stmts     = "sqlcount.stmts"
	Goroutine = "goroutine"
	Heap      = "heap"
)

// Profiles is every profile the soak takes, in order.
var Profiles = []string{Handles, Conns, Stmts, Goroutine, Heap}

// Source says which profile shows where a watched series grew.
type Source struct {
	Profile string
	// Direct is set when the profile counts exactly what the series
	// counts: then the objects open at the end are shown when no site grew
	// (a soak stopped by an invariant in its first seconds).
	Direct bool
	// Note says how the profile relates to the series when it does not
	// count the same thing, or why there is no profile.
	Note string
	// PerObject is how much of the series one object of the profile makes
	// at most (two file descriptors per SQLite connection); 1 when zero.
	PerObject float64
	// Listed is set when the profile's sites are listed but never named
	// in the verdict: they are not where the series' objects are held.
	Listed bool
}

// Notes of the series that no profile counts directly.
const (
	noteInUse = "sqlcount records where a connection was opened, not who holds it: un-closed rows or a transaction that pins a pooled connection show at the call that opened the connection, so these sites are not named in the verdict"
	noteFDs   = "file descriptors have no profile of their own; each SQLite connection holds one or two (its database file, and its -wal in WAL mode), so the connections that grew are shown; a leaked file, pipe or socket shows no site here"
	noteNoFD  = "file descriptors have no profile of their own: a leaked file, pipe or socket shows no site"
	noteRSS   = "resident memory also holds what the Go heap profile cannot see (cgo allocations such as SQLite's page cache, stacks, the runtime's own)"
	noteHeap  = "the heap profile is sampled (one sample per runtime.MemProfileRate bytes allocated, 512 KiB unless the target lowers it): small leaks show late or not at all"
	noteBack  = "sqlcount counts only the connections opened through it, and a backend opened around it (what server_within_client catches) has no origin: these sites are listed, not named in the verdict; worker_db_connections_open names them when the client counts the connections too"
	noteProc  = "counts every *sql.DB of the process, of any driver; only the handles opened through sqlcount have an origin"
	noteTotal = "the server's backends over all replicas: see each replica's series"
)

// SourceOf returns the profile behind the series of metric name with
// labels, and false when no profile shows where it grows.
func SourceOf(name string, labels map[string]string) (Source, bool) {
	switch name {
	case "worker_db_handles_open":
		return Source{Profile: Handles, Direct: true}, true
	case "worker_db_process_handles_open":
		return Source{Profile: Handles, Note: noteProc}, true
	case "worker_db_connections_open", "go_sql_open_connections":
		return Source{Profile: Conns, Direct: true}, true
	case "go_sql_in_use_connections":
		return Source{Profile: Conns, Note: noteInUse, Listed: true}, true
	case "worker_db_statements_open":
		return Source{Profile: Stmts, Direct: true}, true
	case "go_goroutines":
		return Source{Profile: Goroutine, Direct: true}, true
	case "process_resident_memory_bytes":
		return Source{Profile: Heap, Note: noteRSS + "; " + noteHeap}, true
	case "process_open_fds":
		return Source{Profile: Conns, Note: noteFDs, PerObject: 2}, true
	case "worker_open_fds":
		if labels["type"] == "sqlite" {
			return Source{Profile: Conns, Note: noteFDs, PerObject: 2}, true
		}
		return Source{Note: noteNoFD}, false
	case "soak_replica_server_backends":
		return Source{Profile: Conns, Note: noteBack, Listed: true}, true
	case "soak_server_backends":
		return Source{Note: noteTotal}, false
	}
	if strings.HasPrefix(name, "go_memstats_") && strings.HasSuffix(name, "_bytes") {
		return Source{Profile: Heap, Note: noteHeap}, true
	}
	return Source{Note: "no profile is known to count " + name}, false
}
