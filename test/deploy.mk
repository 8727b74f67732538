# test/deploy.mk: included by the top-level Makefile.
#
# deploy-tools provisions what the test/deploy tests need when it is missing:
# promtool and prometheus (rules, config, metrics lint and the end-to-end
# test) and alertmanager (the soak harness's --alertmanager.url test).
#  - as root on Debian: Debian's prometheus and prometheus-alertmanager
#    packages (Prometheus 2.42, Alertmanager 0.25 on bookworm);
#  - otherwise: pinned builds from the Prometheus Go modules into
#    $(DEPLOY_TOOLS_BIN) (5 to 10 minutes once on 2 cores, then cached; checked
#    with Go 1.26: the deploy tests pass with these binaries). Alertmanager
#    is a plain `go install mod@version`; Prometheus's go.mod has replace and
#    exclude directives, which `go install mod@version` refuses, so its
#    promtool and prometheus are built in a throw-away module that requires
#    it with the same replaces.
# The tests look in $(DEPLOY_TOOLS_BIN) first, then on PATH, and fail (never
# skip) when a tool is missing.

DEPLOY_GO               ?= go
DEPLOY_TOOLS_BIN        ?= $(CURDIR)/bin
# github.com/prometheus/prometheus v0.42.0 is Prometheus 2.42.0, the
# version of Debian bookworm's package, so both routes run the same PromQL.
PROMETHEUS_GO_VERSION   ?= v0.42.0
ALERTMANAGER_GO_VERSION ?= v0.25.0
# auto: Debian's packages as root where apt-get exists, else the Go builds;
# go: the Go builds into $(DEPLOY_TOOLS_BIN) even if the tools are on PATH.
DEPLOY_TOOLS_METHOD     ?= auto

.PHONY: deploy-tools
deploy-tools:
	@set -e; \
	have() { [ -x "$(DEPLOY_TOOLS_BIN)/$$1" ] || { [ "$(DEPLOY_TOOLS_METHOD)" != go ] && command -v "$$1" >/dev/null 2>&1; }; }; \
	if have promtool && have prometheus && { have prometheus-alertmanager || have alertmanager; }; then \
	  exit 0; \
	fi; \
	if [ "$(DEPLOY_TOOLS_METHOD)" != go ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "deploy-tools: installing Debian's prometheus and prometheus-alertmanager"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq; \
	  apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager; \
	else \
	  echo "deploy-tools: building Prometheus $(PROMETHEUS_GO_VERSION) and Alertmanager $(ALERTMANAGER_GO_VERSION) into $(DEPLOY_TOOLS_BIN)"; \
	  mkdir -p "$(DEPLOY_TOOLS_BIN)"; \
	  GOBIN="$(DEPLOY_TOOLS_BIN)" CGO_ENABLED=0 $(DEPLOY_GO) install \
	    github.com/prometheus/alertmanager/cmd/alertmanager@$(ALERTMANAGER_GO_VERSION); \
	  tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	  cd "$$tmp"; \
	  $(DEPLOY_GO) mod init deploy-tools >/dev/null 2>&1; \
	  $(DEPLOY_GO) mod edit \
	    -replace=k8s.io/klog=github.com/simonpasquier/klog-gokit@v0.3.0 \
	    -replace=k8s.io/klog/v2=github.com/simonpasquier/klog-gokit/v3@v3.0.0; \
	  $(DEPLOY_GO) get github.com/prometheus/prometheus/cmd/promtool@$(PROMETHEUS_GO_VERSION) github.com/prometheus/prometheus/cmd/prometheus@$(PROMETHEUS_GO_VERSION); \
	  for c in promtool prometheus; do \
	    CGO_ENABLED=0 $(DEPLOY_GO) build -o "$(DEPLOY_TOOLS_BIN)/$$c" github.com/prometheus/prometheus/cmd/$$c; \
	  done; \
	fi; \
	have promtool && have prometheus && { have prometheus-alertmanager || have alertmanager; } || \
	  { echo "deploy-tools: promtool, prometheus or alertmanager still missing" >&2; exit 1; }
