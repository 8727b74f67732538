// Package drivertest helps test wrappers of database/sql drivers: the lists
// of the optional interfaces of package driver, and which of them a value
// implements. The lists are kept here, apart from sqlcount's generator, so
// that the tests check the generated code rather than trust it.
package drivertest

import (
	"database/sql/driver"
	"reflect"
)

// ConnInterfaces are the optional interfaces of a driver.Conn.
var ConnInterfaces = []reflect.Type{
	reflect.TypeFor[driver.Pinger](),
	reflect.TypeFor[driver.ExecerContext](),
	reflect.TypeFor[driver.QueryerContext](),
	reflect.TypeFor[driver.ConnPrepareContext](),
	reflect.TypeFor[driver.ConnBeginTx](),
	reflect.TypeFor[driver.SessionResetter](),
	reflect.TypeFor[driver.Validator](),
	reflect.TypeFor[driver.NamedValueChecker](),
	reflect.TypeFor[driver.Execer](),  //nolint:staticcheck // deprecated, still used by database/sql
	reflect.TypeFor[driver.Queryer](), //nolint:staticcheck // deprecated, still used by database/sql
}

// StmtInterfaces are the optional interfaces of a driver.Stmt.
var StmtInterfaces = []reflect.Type{
	reflect.TypeFor[driver.StmtExecContext](),
	reflect.TypeFor[driver.StmtQueryContext](),
	reflect.TypeFor[driver.NamedValueChecker](),
	reflect.TypeFor[driver.ColumnConverter](), //nolint:staticcheck // deprecated, still used by database/sql
}

// Implemented returns the names of the interfaces of ifaces that v
// implements, in the order of ifaces.
func Implemented(v any, ifaces []reflect.Type) []string {
	var out []string
	t := reflect.TypeOf(v)
	for _, i := range ifaces {
		if t.Implements(i) {
			out = append(out, i.Name())
		}
	}
	return out
}
