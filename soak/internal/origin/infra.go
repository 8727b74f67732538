package origin

import "strings"

// stdTop are the first path elements of the standard library's packages.
var stdTop = map[string]bool{}

func init() {
	for _, p := range strings.Fields(`archive bufio builtin bytes cmp compress container context crypto
		database debug embed encoding errors expvar flag fmt go hash html image index internal io iter
		log maps math mime net os path plugin reflect regexp runtime slices sort strconv strings structs
		sync syscall testing text time unique unsafe unicode vendor weak`) {
		stdTop[p] = true
	}
}

// infraModules are the packages between a program and its database: the
// SQL drivers, and the package that counts their handles. Their frames are
// not where a leak is, but what it went through.
var infraModules = []string{
	"github.com/sqlworker/worker/sqlcount",
	"github.com/mattn/go-sqlite3",
	"github.com/jackc/pgx",
	"github.com/jackc/pgconn",
	"github.com/jackc/puddle",
	"github.com/lib/pq",
	"modernc.org/sqlite",
	"github.com/go-sql-driver/mysql",
}

// pkgPath returns the import path of a function's package, from its
// symbol name: github.com/a/b.(*T).M → github.com/a/b.
func pkgPath(fn string) string {
	slash := strings.LastIndexByte(fn, '/')
	dot := strings.IndexByte(fn[slash+1:], '.')
	if dot < 0 {
		return fn
	}
	return fn[:slash+1+dot]
}

// infrastructure reports whether fn belongs to the standard library (the
// runtime, database/sql, runtime/pprof, net/http and the rest), a SQL
// driver or sqlcount: frames that a leak goes through, not where it is.
func infrastructure(fn string) bool {
	pkg := pkgPath(fn)
	top, _, _ := strings.Cut(pkg, "/")
	if stdTop[top] {
		return true
	}
	for _, m := range infraModules {
		if pkg == m || strings.HasPrefix(pkg, m+"/") {
			return true
		}
	}
	return false
}

// runtimeFunc reports whether fn is the Go runtime's.
func runtimeFunc(fn string) bool {
	pkg := pkgPath(fn)
	return pkg == "runtime" || strings.HasPrefix(pkg, "runtime/internal") || strings.HasPrefix(pkg, "internal/runtime")
}
