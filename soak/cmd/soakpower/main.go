// Command soakpower is the detection-power study of the soak detector
// (`make soak-power`, docs/soak.md "Detection power"): it replays soaks of
// the stand-in at every leak rate × noise × soak length, soaks some of them
// for real through bin/soak and bin/standin, and writes power.md and
// power.json into -dir. The study is soak/internal/power. It exits 2 when
// the study could not be run or a real soak ended otherwise than a correct
// detector ends it.
package main

import (
	"fmt"
	"os"

	"github.com/sqlworker/worker/soak/internal/power"
)

func main() {
	if err := power.Run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "soakpower:", err)
		os.Exit(2)
	}
}
