# Soak targets, included by the top-level Makefile.
#
#   make soak            soak the worker for SOAK_DURATION, report in SOAK_REPORT_DIR
#   make soak-short      the same for SOAK_SHORT_DURATION with SOAK_SHORT_WARMUP (CI)
#   make soak-selftest   prove the alarm: every injected leak caught, the clean build passes
#   make soak-power      the detection-power study behind docs/soak.md's sensitivity table
#   make soak-compare    compare SOAK_REPORT_DIR's soak with SOAK_BASELINE's (a report dir)
#
# Every soak also writes junit.xml and summary.md into SOAK_REPORT_DIR (and
# appends the summary to $GITHUB_STEP_SUMMARY in GitHub Actions). With
# SOAK_BASELINE set, make soak compares the soak with that earlier report
# at the end (bin/soak --baseline) and fails when something regressed.
#
# SOAK_DB=postgres soaks SOAK_REPLICAS replicas of the worker on one
# PostgreSQL server instead (soak, soak-short and soak-selftest): a
# throwaway one that bin/soak starts, or SOAK_DB_URL's.
#
# The worker runs with --web.enable-pprof, so that a leak's verdict names
# the call site that grew (docs/soak.md, "Where it leaks").
#
# Exit status of bin/soak: 0 steady, 1 leak or broken invariant, 2 could not soak;
# of bin/soak compare: 0 nothing regressed, 1 regressed, 2 could not compare.

GO                  ?= go
BIN                 ?= bin
SOAK_DURATION       ?= 10m
SOAK_WARMUP         ?= 30s
SOAK_SHORT_DURATION ?= 60s
SOAK_SHORT_WARMUP   ?= 15s
SOAK_REPORT_DIR     ?= soak-report
SOAK_CONFIG         ?= soak/worker-soak.yml
SOAK_PORT           ?= 19847
# SOAK_FLAGS adds flags to bin/soak, e.g. --alertmanager.url=http://127.0.0.1:9093 --fail-fast.
SOAK_FLAGS          ?=
# SOAK_SELFTEST_TIMEOUT bounds the whole self-test (six soaks run in parallel).
SOAK_SELFTEST_TIMEOUT ?= 10m
# SOAK_WORKER is the worker binary soaked; point it at a kept build to soak
# one binary many times while the tree changes (no rule rebuilds it then).
SOAK_WORKER         ?= $(BIN)/worker
# SOAK_POWER_FLAGS adds flags to bin/soakpower, e.g. -seeds 100 or -real=false.
SOAK_POWER_FLAGS    ?=
SOAK_POWER_DIR      ?= $(SOAK_REPORT_DIR)/power
# SOAK_BASELINE is an earlier soak's report dir (or report.json) to compare with.
SOAK_BASELINE       ?=
# SOAK_DB is sqlite (the default) or postgres. On PostgreSQL, SOAK_REPLICAS
# replicas serve metrics on SOAK_PORT, SOAK_PORT+1, ...; SOAK_DB_URL, when
# set, is the server to soak on (bin/soak reads it as --postgres.url),
# otherwise bin/soak starts a throwaway one (--postgres).
SOAK_DB             ?= sqlite
SOAK_REPLICAS       ?= 3
SOAK_PG_CONFIG      ?= soak/worker-soak-pg.yml

ifeq ($(SOAK_DB),postgres)
SOAK_CONFIG         := $(SOAK_PG_CONFIG)
SOAK_DB_FLAGS       := --replicas $(SOAK_REPLICAS) $(if $(SOAK_DB_URL),,--postgres)
SOAK_DB_ARGS        := --db.url {db.url} --db.replica-id soak-{replica} --web.listen-address 127.0.0.1:{port} --web.enable-pprof
else ifeq ($(SOAK_DB),sqlite)
SOAK_DB_FLAGS       :=
SOAK_DB_ARGS         = --db.path $$tmp/soak.db --web.listen-address 127.0.0.1:$(SOAK_PORT) --web.enable-pprof
else
$(error SOAK_DB: want sqlite or postgres, got $(SOAK_DB))
endif

.PHONY: soak soak-short soak-selftest soak-test soak-power soak-compare FORCE

FORCE:

$(BIN)/soak: FORCE
	$(GO) build -o $@ ./soak/cmd/soak

$(BIN)/worker-leak: FORCE
	$(GO) build -tags leak -o $@ ./cmd/worker

$(BIN)/standin: FORCE
	$(GO) build -o $@ ./soak/cmd/standin

$(BIN)/soakpower: FORCE
	$(GO) build -o $@ ./soak/cmd/soakpower

## soak: soak the worker for SOAK_DURATION (jobs every second); report in SOAK_REPORT_DIR
soak: $(SOAK_WORKER) $(BIN)/soak
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && set -x && \
	./$(BIN)/soak --duration $(SOAK_DURATION) --warmup $(SOAK_WARMUP) --report-dir $(SOAK_REPORT_DIR) \
		--metrics-url http://127.0.0.1:$(SOAK_PORT)/metrics $(SOAK_DB_FLAGS) \
		$(if $(SOAK_BASELINE),--baseline $(SOAK_BASELINE)) $(SOAK_FLAGS) -- \
		$(abspath $(SOAK_WORKER)) --config.file $(SOAK_CONFIG) $(SOAK_DB_ARGS)

## soak-short: a 60 s soak with a 15 s warm-up, for every change in CI
soak-short:
	@$(MAKE) --no-print-directory soak SOAK_DURATION=$(SOAK_SHORT_DURATION) SOAK_WARMUP=$(SOAK_SHORT_WARMUP)

## soak-selftest: soak the leak-injected worker once per mode (must exit 1 naming the right series) and the clean one (must exit 0)
soak-selftest: $(BIN)/worker $(BIN)/worker-leak $(BIN)/soak
	SOAK_BIN=$(abspath $(BIN)/soak) SOAK_WORKER=$(abspath $(BIN)/worker) \
	SOAK_WORKER_LEAK=$(abspath $(BIN)/worker-leak) SOAK_CONFIG=$(abspath $(SOAK_CONFIG)) \
	SOAK_REPORT_DIR=$(abspath $(SOAK_REPORT_DIR))/selftest$(if $(filter postgres,$(SOAK_DB)),-postgres) \
	SOAK_DB=$(SOAK_DB) SOAK_REPLICAS=$(SOAK_REPLICAS) \
	$(GO) test -tags soakselftest -run '^TestSelftest$$' -count=1 -v -parallel 6 -timeout $(SOAK_SELFTEST_TIMEOUT) ./soak/cmd/soak

## soak-power: the detection-power study: sweep leak rate × noise × soak length on the stand-in, and some real soaks of it; then the comparison study (compare.md)
soak-power: $(BIN)/soak $(BIN)/standin $(BIN)/soakpower
	./$(BIN)/soakpower -soak $(abspath $(BIN)/soak) -standin $(abspath $(BIN)/standin) -dir $(SOAK_POWER_DIR) $(SOAK_POWER_FLAGS)

## soak-compare: compare the soak in SOAK_REPORT_DIR with the one in SOAK_BASELINE (exit 1 when something regressed)
soak-compare: $(BIN)/soak
	@test -n "$(SOAK_BASELINE)" || { echo "soak-compare: SOAK_BASELINE: want an earlier soak's report dir" >&2; exit 2; }
	./$(BIN)/soak compare $(SOAK_BASELINE) $(SOAK_REPORT_DIR)

## soak-test: the harness's own unit tests (needs prometheus-alertmanager for the alert test)
soak-test: $(if $(wildcard test/deploy.mk),deploy-tools)
	$(GO) test -race -count=1 ./soak/...
