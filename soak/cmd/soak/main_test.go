package main

import (
	"testing"

	"go.uber.org/goleak"
)

// The tests here run the built bin/soak (nightly_test.go, and
// selftest_test.go under the soakselftest tag); the command's own tests
// are in soak/internal/cli.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
