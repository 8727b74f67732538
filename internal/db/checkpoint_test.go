package db_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/sqlworker/worker/internal/db"
)

// walHeader returns the 32-byte header of the -wal at path: its checkpoint
// sequence and salts change whenever a checkpoint restarts or truncates it.
func walHeader(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 32 {
		t.Fatalf("%s-wal: got %d bytes, want a header of 32 and frames", path, len(b))
	}
	return b[:32]
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// writePages commits more than SQLite's autocheckpoint threshold (1000
// pages) in one transaction, so that a connection with automatic
// checkpoints on would checkpoint at its commit.
func writePages(t *testing.T, d *sql.DB) {
	t.Helper()
	if _, err := d.Exec(`CREATE TABLE IF NOT EXISTS blobs (b BLOB);
		INSERT INTO blobs WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 1200)
		SELECT randomblob(3000) FROM c`); err != nil {
		t.Fatal(err)
	}
}

// Ensure that under CheckpointExternal nothing checkpoints: not SQLite's
// automatic checkpoint after a commit of more than 1000 pages, not Close,
// not the last connection as it closes. The -wal keeps its header and every
// frame, the database file is not written, and a reopened handle reads the
// rows from the -wal. Under the default the -wal is checkpointed at Close,
// as before.
func TestHandle_Close_NoCheckpoint(t *testing.T) {
	ctx := context.Background()
	t.Run("External", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "worker.db")
		h := db.New(db.Config{Path: path, Checkpoint: db.CheckpointExternal})
		d, err := h.Init(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var auto int
		if err := d.QueryRow("PRAGMA wal_autocheckpoint").Scan(&auto); err != nil {
			t.Fatal(err)
		}
		if auto != 0 {
			t.Fatalf("PRAGMA wal_autocheckpoint: got %d, want 0", auto)
		}
		header := walHeader(t, path)
		dbSum := fileSum(t, path)
		writePages(t, d)
		if got := walHeader(t, path); !bytes.Equal(got, header) {
			t.Fatalf("-wal header after 1200 pages: got %x, want %x (unchanged: no checkpoint restarted it)", got, header)
		}
		if got := fileSum(t, path); got != dbSum {
			t.Fatalf("database file after 1200 pages: changed, want unchanged (no automatic checkpoint)")
		}
		walSize := fileSize(t, path+"-wal")
		if err := h.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if got := fileSize(t, path+"-wal"); got != walSize {
			t.Fatalf("-wal size after Close: got %d, want %d (every frame kept)", got, walSize)
		}
		if got := walHeader(t, path); !bytes.Equal(got, header) {
			t.Fatalf("-wal header after Close: got %x, want %x", got, header)
		}
		if got := fileSum(t, path); got != dbSum {
			t.Fatalf("database file after Close: changed, want unchanged (no checkpoint at Close)")
		}

		h2 := db.New(db.Config{Path: path, Checkpoint: db.CheckpointExternal})
		defer h2.Close(ctx)
		d2, err := h2.Init(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := d2.QueryRow("SELECT count(*) FROM blobs").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1200 {
			t.Fatalf("rows read from the -wal after a reopen: got %d, want 1200", n)
		}
	})
	t.Run("Worker", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "worker.db")
		h := db.New(db.Config{Path: path})
		d, err := h.Init(ctx)
		if err != nil {
			t.Fatal(err)
		}
		writePages(t, d)
		if err := h.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() > 0 {
			t.Fatalf("-wal after Close: got %d bytes, want empty or gone", fi.Size())
		}
	})
	t.Run("UnknownMode", func(t *testing.T) {
		h := db.New(db.Config{Path: filepath.Join(t.TempDir(), "worker.db"), Checkpoint: "litestream"})
		defer h.Close(ctx)
		if _, err := h.Init(ctx); !errors.Is(err, db.ErrCheckpointMode) {
			t.Fatalf("Init: got %v, want %v", err, db.ErrCheckpointMode)
		}
	})
}
