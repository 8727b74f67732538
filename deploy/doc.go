// Package deploy holds no code: its tests prove what ships in deploy/ and
// grafana/ against the real thing. promtool checks and unit-tests the
// alert rules and lints a real scrape of the worker; a real Prometheus
// scrapes a real worker (and a leak-injected one) and runs every dashboard
// query and rule expression; the systemd unit goes through
// systemd-analyze; the Dockerfile, compose file and Kubernetes manifests are
// checked against the repository and the worker's flags, and the Dockerfile's
// static build is run. The tools come from `make deploy-tools`
// (deploy/deploy.mk); a missing tool fails the tests, it never skips them.
package deploy
