package leak

import "database/sql"

// Openers opens handles on the worker's database for the leak modes: the
// Handle gives them to Init.
type Openers struct {
	// Counted opens a handle through the counting driver, as the Handle
	// does (handle mode).
	Counted func() (*sql.DB, error)
	// Raw opens a handle around the counting driver (bypass mode): on
	// PostgreSQL pgx's own database/sql connector for the Handle's URL,
	// password file and application_name, the connector a plain
	// sql.Open("pgx", …) uses; on SQLite go-sqlite3's "sqlite3" driver.
	Raw func() (*sql.DB, error)
}
