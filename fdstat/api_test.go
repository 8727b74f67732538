package fdstat_test

import (
	"reflect"
	"testing"

	"github.com/sqlworker/worker/fdstat"
	"github.com/sqlworker/worker/sqlcount"
)

// Ensure fdstat's options are its own type: sqlcount.WithNamespace given
// to fdstat.NewCollector does not compile.
func TestOption_OwnType(t *testing.T) {
	fd, sc := reflect.TypeFor[fdstat.Option](), reflect.TypeFor[sqlcount.Option]()
	if fd.AssignableTo(sc) || sc.AssignableTo(fd) {
		t.Errorf("fdstat.Option (%v) and sqlcount.Option (%v): got assignable, want distinct types", fd, sc)
	}
}

// Ensure Types cannot be changed by a caller: each call returns a copy.
func TestTypes_Copy(t *testing.T) {
	a := fdstat.Types()
	a[0] = fdstat.Other
	if got, want := fdstat.Types()[0], fdstat.SQLite; got != want {
		t.Errorf("Types()[0] after a caller's write: got %v, want %v", got, want)
	}
}

// Ensure a value that is no Type reads as none and prints its value.
func TestCounts_Get(t *testing.T) {
	var c fdstat.Counts
	for _, ty := range []fdstat.Type{-1, fdstat.Other + 1} {
		if got := c.Get(ty); got != 0 {
			t.Errorf("Get(%d): got %d, want 0", ty, got)
		}
	}
	if got, want := fdstat.Type(42).String(), "Type(42)"; got != want {
		t.Errorf("String: got %q, want %q", got, want)
	}
}
