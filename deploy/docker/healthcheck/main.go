// Command healthcheck is the container health check of the worker image.
// The image is distroless (no shell, no curl) and the worker has no health
// subcommand, so this small static binary does the GET:
//
//	healthcheck [URL]
//
// It exits 0 when URL (default http://127.0.0.1:9847/readyz) answers 2xx
// within the timeout, and 1 otherwise, printing why on stderr.
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// DefaultURL is the worker's readiness endpoint on its default port.
const DefaultURL = "http://127.0.0.1:9847/readyz"

func main() {
	os.Exit(run(os.Args[1:], os.Stderr, 3*time.Second))
}

func run(args []string, stderr io.Writer, timeout time.Duration) int {
	url := DefaultURL
	switch len(args) {
	case 0:
	case 1:
		url = args[0]
	default:
		fmt.Fprintln(stderr, "usage: healthcheck [URL]")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 1
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		fmt.Fprintf(stderr, "healthcheck: %s: %s\n", url, resp.Status)
		return 1
	}
	return 0
}
