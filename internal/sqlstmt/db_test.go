package sqlstmt

import (
	"database/sql"
	"testing"
)

// queryOne returns the first column of the first row of q on a new
// in-memory database opened with the driver.
func queryOne(t *testing.T, q string) string {
	t.Helper()
	db, err := sql.Open("sqlite3", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var s string
	if err := db.QueryRow(q).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}
