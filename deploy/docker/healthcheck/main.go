// Command healthcheck is the container health check of the worker image.
// The image is distroless (no shell, no curl) and the worker has no health
// subcommand, so this small static binary does the GET:
//
//	healthcheck [-ca FILE | -insecure-skip-verify] [URL]
//
// It exits 0 when URL (default http://127.0.0.1:9847/readyz) answers 2xx
// within the timeout, 1 otherwise, printing why on stderr, and 2 for bad
// arguments. Under a web config with TLS, give an https:// URL and either
// -ca, the PEM file of the CA that signed the worker's certificate, or
// -insecure-skip-verify, which checks no certificate, as the kubelet's
// HTTPS probes do. Under basic auth, put the user and password in the URL
// (https://probe:secret@127.0.0.1:9847/readyz); they are sent as basic auth.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
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

const usage = "usage: healthcheck [-ca FILE | -insecure-skip-verify] [URL]"

func run(args []string, stderr io.Writer, timeout time.Duration) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	caFile := fs.String("ca", "", "PEM file of the CA that signed the worker's certificate")
	insecure := fs.Bool("insecure-skip-verify", false, "check no certificate, as the kubelet's HTTPS probes")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n%s\n", err, usage)
		return 2
	}
	url := DefaultURL
	switch fs.NArg() {
	case 0:
	case 1:
		url = fs.Arg(0)
	default:
		fmt.Fprintln(stderr, usage)
		return 2
	}
	if *caFile != "" && *insecure {
		fmt.Fprintf(stderr, "healthcheck: -ca and -insecure-skip-verify exclude each other\n%s\n", usage)
		return 2
	}
	// InsecureSkipVerify is opt-in, for a loopback check of the container itself.
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: *insecure}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			fmt.Fprintf(stderr, "healthcheck: -ca: %v\n", err)
			return 2
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			fmt.Fprintf(stderr, "healthcheck: -ca %s: no PEM certificate\n", *caFile)
			return 2
		}
		tlsConfig.RootCAs = pool
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 1
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil, TLSClientConfig: tlsConfig}}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		fmt.Fprintf(stderr, "healthcheck: %s: %s\n", req.URL.Redacted(), resp.Status)
		return 1
	}
	return 0
}
