// Command worker runs scheduled jobs against one SQLite (or PostgreSQL)
// database through one shared handle, and exports the metrics that prove it
// does not leak.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
)

func main() {
	m := NewMain()
	err := m.Run(context.Background(), os.Args[1:])
	os.Exit(exitCode(err, m))
}

// exitCode prints err as one line and maps it to the exit status:
// 0 clean stop, 1 runtime failure, 2 bad flags or config.
func exitCode(err error, m *Main) int {
	if err == nil {
		return 0
	}
	fmt.Fprintln(m.Stderr, "worker: "+strings.ReplaceAll(err.Error(), "\n", " "))
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}
