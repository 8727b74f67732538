# The worker's build. `make run` and `make test` are all a fresh machine needs.
GO        ?= go
BIN       ?= bin
PKG       := github.com/sqlworker/worker
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BRANCH    ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
VPKG      := github.com/prometheus/common/version
# go-sqlite3 registers no "sqlite3" of its own: the worker registers its
# counted driver under the name, so a Go job's sql.Open("sqlite3", ...) is
# counted in worker_db_handles_open (internal/db SQLite3Name).
SQLITE3_LDFLAGS := -X github.com/mattn/go-sqlite3.driverName=
LDFLAGS   := -X $(VPKG).Version=$(VERSION) -X $(VPKG).Revision=$(REVISION) -X $(VPKG).Branch=$(BRANCH) \
             -X $(VPKG).BuildUser=$(shell id -un 2>/dev/null)@$(shell hostname 2>/dev/null) \
             -X $(VPKG).BuildDate=$(shell date -u +%Y%m%d-%H:%M:%S) \
             $(SQLITE3_LDFLAGS)
TEST_TIMEOUT ?= 20m
GOLANGCI_LINT_VERSION ?= v2.15.0
FUZZTIME  ?= 30s
export CGO_ENABLED := 1

.PHONY: all build run test test-packages test-short lint bench fuzz clean

all: build

build: $(BIN)/worker

$(BIN)/worker: FORCE
	$(GO) build -ldflags "$(LDFLAGS)" -o $@ ./cmd/worker

FORCE:

## run: start the worker on its embedded defaults (./worker.db, metrics on 127.0.0.1:9847)
run: build
	./$(BIN)/worker $(ARGS)

## test: the whole suite with the race detector, including the end-to-end tests of the built binary
test: deploy-tools test-packages
	$(GO) test -race -timeout $(TEST_TIMEOUT) $(SLOW_TESTS) ./...

# SLOW_TESTS are the packages that take longest, named first so that go test
# builds and starts them first: ./... alone starts them in path order, and
# test/reliability (5 min) began only after 3 min of the others, which made
# the suite last as long as both (docs/performance.md, "Test time").
SLOW_TESTS = ./test/reliability ./soak/internal/cli ./test/deploy

## test-packages: as root on Debian, install the packages the tests run that are missing: PostgreSQL (throwaway servers) and Chromium (the status page)
test-packages:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  missing=""; \
	  command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	  if [ -n "$$missing" ]; then \
	    echo "test-packages: installing$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	  fi; \
	fi

## test-short: unit tests only
test-short:
	$(GO) test -short -race ./...

## lint: go vet, gofmt and the pinned golangci-lint
lint:
	$(GO) vet ./...
	$(GO) vet -tags leak ./...
	$(GO) vet -tags clockskew ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	$(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) run ./...

## bench: the benchmarks recorded in docs/performance.md; each x-floor is a cost over its floor, measured in the same run
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./internal/db ./fdstat ./sqlcount
	$(GO) test -run '^$$' -bench 'BenchmarkRun$$' -benchtime 3000x -benchmem -count 5 ./internal/jobs
	$(GO) test -run '^$$' -bench 'BenchmarkScrape$$' -benchmem -count 5 .

## fuzz: each fuzz target for FUZZTIME
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 200x ./internal/config
	$(GO) test -run '^$$' -fuzz '^FuzzParse_Nesting$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 200x ./internal/config
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 200x ./internal/schedule

clean:
	rm -rf $(BIN) soak-report

include test/deploy.mk
include soak/soak.mk
include test/reliability.mk
include bench/bench.mk

