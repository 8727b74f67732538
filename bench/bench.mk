# bench/bench.mk: included by the top-level Makefile.
#
# bench-peers runs bench/cmd/peers: the same three jobs for PEERS_DURATION on
# this worker, a Node.js worker (bench/peers/node: better-sqlite3, node-cron,
# prom-client, installed with npm ci into bench/peers/node/node_modules,
# which git ignores) and a cron stand-in that runs the sqlite3 CLI per run,
# and prints their CPU and RSS as ratios to this worker's. It needs node 20
# or later, npm and sqlite3; it is not part of `make test` or CI.
# better-sqlite3 builds from source where its prebuilt binary cannot be
# downloaded: node-gyp then needs the Node.js headers, taken from
# PEERS_NODEDIR (by default the prefix of the node on PATH when it has
# include/node).

PEERS_DURATION        ?= 60s
PEERS_SCRAPE_INTERVAL ?= 1s
PEERS_NODE_DIR        := bench/peers/node
PEERS_NODEDIR         ?= $(shell d=$$(dirname $$(dirname $$(command -v node 2>/dev/null) 2>/dev/null) 2>/dev/null); [ -f "$$d/include/node/node_api.h" ] && echo "$$d")

.PHONY: bench-peers

$(PEERS_NODE_DIR)/node_modules/.package-lock.json: $(PEERS_NODE_DIR)/package-lock.json
	cd $(PEERS_NODE_DIR) && $(if $(PEERS_NODEDIR),npm_config_nodedir=$(PEERS_NODEDIR)) npm ci --no-audit --no-fund

## bench-peers: this worker against a Node.js worker and cron + sqlite3 CLI, side by side (needs node, npm, sqlite3)
bench-peers: $(BIN)/worker $(PEERS_NODE_DIR)/node_modules/.package-lock.json
	$(GO) run ./bench/cmd/peers -worker $(BIN)/worker -node.dir $(PEERS_NODE_DIR) \
		-duration $(PEERS_DURATION) -scrape.interval $(PEERS_SCRAPE_INTERVAL)
