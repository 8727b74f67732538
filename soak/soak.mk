# Soak targets, included by the top-level Makefile.
#
#   make soak            soak the worker for SOAK_DURATION, report in SOAK_REPORT_DIR
#   make soak-short      the same for SOAK_SHORT_DURATION (CI)
#   make soak-selftest   prove the alarm: every injected leak caught, the clean build passes
#
# Exit status of bin/soak: 0 steady, 1 leak or broken invariant, 2 could not soak.

GO                  ?= go
BIN                 ?= bin
SOAK_DURATION       ?= 10m
SOAK_SHORT_DURATION ?= 60s
SOAK_REPORT_DIR     ?= soak-report
SOAK_CONFIG         ?= soak/worker-soak.yml
SOAK_PORT           ?= 19847
# SOAK_FLAGS adds flags to bin/soak, e.g. --alertmanager.url=http://127.0.0.1:9093 --fail-fast.
SOAK_FLAGS          ?=
# SOAK_SELFTEST_TIMEOUT bounds the whole self-test (six soaks run in parallel).
SOAK_SELFTEST_TIMEOUT ?= 10m

.PHONY: soak soak-short soak-selftest soak-test FORCE

FORCE:

$(BIN)/soak: FORCE
	$(GO) build -o $@ ./soak

$(BIN)/worker-leak: FORCE
	$(GO) build -tags leak -o $@ ./cmd/worker

## soak: soak the worker for SOAK_DURATION (jobs every second); report in SOAK_REPORT_DIR
soak: $(BIN)/worker $(BIN)/soak
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && set -x && \
	./$(BIN)/soak --duration $(SOAK_DURATION) --report-dir $(SOAK_REPORT_DIR) \
		--metrics-url http://127.0.0.1:$(SOAK_PORT)/metrics $(SOAK_FLAGS) -- \
		./$(BIN)/worker --config.file $(SOAK_CONFIG) --db.path $$tmp/soak.db \
		--web.listen-address 127.0.0.1:$(SOAK_PORT)

## soak-short: a 60 s soak, for every change in CI
soak-short:
	@$(MAKE) --no-print-directory soak SOAK_DURATION=$(SOAK_SHORT_DURATION)

## soak-selftest: soak the leak-injected worker once per mode (must exit 1 naming the right series) and the clean one (must exit 0)
soak-selftest: $(BIN)/worker $(BIN)/worker-leak $(BIN)/soak
	SOAK_BIN=$(abspath $(BIN)/soak) SOAK_WORKER=$(abspath $(BIN)/worker) \
	SOAK_WORKER_LEAK=$(abspath $(BIN)/worker-leak) SOAK_CONFIG=$(abspath $(SOAK_CONFIG)) \
	SOAK_REPORT_DIR=$(abspath $(SOAK_REPORT_DIR))/selftest \
	$(GO) test -tags soakselftest -run '^TestSelftest$$' -count=1 -v -parallel 6 -timeout $(SOAK_SELFTEST_TIMEOUT) ./soak

## soak-test: the harness's own unit tests (needs prometheus-alertmanager for the alert test)
soak-test: $(if $(wildcard deploy/deploy.mk),deploy-tools)
	$(GO) test -race -count=1 ./soak/...
