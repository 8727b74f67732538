# The reliability targets (issue 5), included from the Makefile. The default
# reliability tests also run in `make test`; these run them on their own,
# longer (crash) or only here (load, load-pg). See docs/reliability.md.
RELIABILITY_PKG ?= ./test/reliability
CRASH_KILLS     ?= 100
LOAD_DURATION   ?= 2m
LOAD_REPORT     ?=

.PHONY: reliability crash load load-pg

## reliability: database faults, SIGKILL (20 kills), context-ignoring job, FD limit, TLS; as in make test
reliability:
	$(GO) test -count=1 -v -timeout 15m $(RELIABILITY_PKG)

## crash: SIGKILL the worker CRASH_KILLS times (default 100); RELIABILITY_SEED=n replays a run
crash:
	RELIABILITY_KILLS=$(CRASH_KILLS) $(GO) test -count=1 -v -run '^TestCrash_SIGKILL$$' -timeout 60m $(RELIABILITY_PKG)

## load: 100 SQL jobs a second for LOAD_DURATION (default 2m); figures in docs/performance.md
load:
	$(GO) vet -tags load $(RELIABILITY_PKG)
	LOAD_DURATION=$(LOAD_DURATION) LOAD_REPORT=$(LOAD_REPORT) $(GO) test -tags load -count=1 -v -run '^TestLoad$$' -timeout 30m $(RELIABILITY_PKG)

## load-pg: 3 replicas on one PostgreSQL, 100 SQL jobs a second for LOAD_DURATION (default 2m); figures in docs/performance.md
load-pg:
	$(GO) vet -tags load $(RELIABILITY_PKG)
	LOAD_DURATION=$(LOAD_DURATION) LOAD_REPORT=$(LOAD_REPORT) $(GO) test -tags load -count=1 -v -run '^TestLoadPG$$' -timeout 30m $(RELIABILITY_PKG)
