package schedule_test

import (
	"fmt"
	"time"

	"github.com/sqlworker/worker/internal/schedule"
)

func ExampleParse() {
	from := time.Date(2025, time.March, 8, 10, 17, 42, 0, time.UTC)
	for _, spec := range []string{
		"*/15 * * * *",                 // 5 fields: minute hour day-of-month month day-of-week
		"*/10 * * * * *",               // 6 fields: seconds first
		"@every 10s",                   // a fixed interval from the previous run
		"@hourly",                      // a descriptor
		"CRON_TZ=Asia/Tokyo 0 9 * * *", // 09:00 in Tokyo
		"@every 500ms",                 // shorter than 1s: refused, not rounded
	} {
		s, err := schedule.Parse(spec)
		if err != nil {
			fmt.Printf("%-30s error: %v\n", spec, err)
			continue
		}
		fmt.Printf("%-30s next: %s\n", spec, s.Next(from).UTC().Format(time.DateTime))
	}
	// Output:
	// */15 * * * *                   next: 2025-03-08 10:30:00
	// */10 * * * * *                 next: 2025-03-08 10:17:50
	// @every 10s                     next: 2025-03-08 10:17:52
	// @hourly                        next: 2025-03-08 11:00:00
	// CRON_TZ=Asia/Tokyo 0 9 * * *   next: 2025-03-09 00:00:00
	// @every 500ms                   error: @every: interval must be at least 1s, got 500ms
}
