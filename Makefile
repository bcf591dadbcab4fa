# tradecache — developer tasks. `make` alone lists them.
#
# Tests start their own private redis-server processes (free loopback ports,
# temp dirs); `scripts/ensure-redis` makes sure redis-server is installed.

SHELL := /bin/bash
CARGO ?= cargo
# Tests run in parallel, each with its own redis-server: keep the load
# bounded on small (2-core) machines. Override: make test TEST_THREADS=4
TEST_THREADS ?= 2
FUZZ_SECONDS ?= 60
# A test that measures its own process (nextest: the `heavy` group).
ALONE := outage::memory_stays_bounded_through_an_outage
HAVE_NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)

.DEFAULT_GOAL := help
.PHONY: help test lint fmt demo demo-nautilus redis-up redis-down bench bench-nautilus bench-nautilus-py bench-python recovery-test fuzz clean ensure-redis docs-check python-test

help: ## List the targets
	@echo "tradecache make targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  \1\t\2/' | expand -t 21

ensure-redis: ## Check for (or, as root with apt-get, install) redis-server
	@scripts/ensure-redis

test: ensure-redis ## Run all tests (nextest if installed) against private redis-servers
ifeq ($(HAVE_NEXTEST),yes)
	$(CARGO) nextest run --all-features --no-fail-fast --test-threads $(TEST_THREADS)
	$(CARGO) test --doc --all-features
	@# The NautilusTrader adapter (workspace member nautilus/, LGPL-3.0-or-later).
	$(CARGO) nextest run -p tradecache-nautilus --no-fail-fast --test-threads $(TEST_THREADS)
	$(CARGO) test -p tradecache-nautilus --doc
else
	@# Without nextest one process runs all the tests of tests/it: the test
	@# that measures the process (its RSS through an outage) runs alone after.
	$(CARGO) test --all-features --no-fail-fast -- --test-threads $(TEST_THREADS) --skip $(ALONE)
	$(CARGO) test --all-features --test it -- --exact $(ALONE)
	$(CARGO) test -p tradecache-nautilus --no-fail-fast -- --test-threads $(TEST_THREADS)
endif
	scripts/python-test

python-test: ensure-redis ## Build the Python wheel (python/, maturin, venv in target/pyenv) and run its pytest suite
	scripts/python-test

lint: ## rustfmt check, clippy (warnings are errors), rustdoc (warnings are errors)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --all-features -- -D warnings
	@# Default features too: code behind a feature must not leave the rest unused.
	$(CARGO) clippy --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --all-features
	@# The Python bindings (workspace member python/).
	$(CARGO) clippy -p tradecache-py --all-targets -- -D warnings
	@# The NautilusTrader adapter (workspace member nautilus/).
	$(CARGO) clippy -p tradecache-nautilus --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc -p tradecache-nautilus --no-deps

fmt: ## Format the code
	$(CARGO) fmt --all

demo: ensure-redis ## Run examples/trading_node twice against a private AOF redis (2nd run recovers)
	@scripts/redis-up --fresh >/dev/null
	@trap 'scripts/redis-down' EXIT; \
	url="redis://127.0.0.1:$$(cat target/redis-demo/port)"; \
	echo "=== demo, first run (REDIS_URL=$$url) ==="; \
	REDIS_URL="$$url" $(CARGO) run --release --example trading_node && \
	echo "=== demo, second run: recovers the state the first one left ===" && \
	REDIS_URL="$$url" $(CARGO) run --release --example trading_node

demo-nautilus: ensure-redis ## A NautilusTrader backtest persisting through tradecache.nautilus into the demo redis, then a second engine that recovers it
	@scripts/redis-up --fresh >/dev/null
	@trap 'scripts/redis-down' EXIT; scripts/python-test --demo-nautilus "$$(cat target/redis-demo/port)"

redis-up: ## Start the demo redis-server (target/redis-demo, port in target/redis-demo/port)
	@scripts/redis-up

redis-down: ## Stop the demo redis-server
	@scripts/redis-down

bench: ensure-redis ## Run the benches (table printed, report in target/bench/report.json)
	@# strace counts the hot path's syscalls; installed when we can, skipped otherwise.
	@command -v strace >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends strace >/dev/null; } || \
		echo "bench: strace not installed; the syscall count is skipped"
	@# load writes report.json afresh; hot_path and kv merge their keys into it.
	$(CARGO) bench --bench load
	$(CARGO) bench --bench hot_path
	$(CARGO) bench --bench kv

bench-python: ensure-redis ## The Python bench: put/kv.set/near-cache get/load against redis-py on one private server (target/bench/python.json)
	scripts/python-test --bench

bench-nautilus-py: ensure-redis ## A NautilusTrader Python node's Cache on tradecache.nautilus vs Nautilus's own CacheDatabaseAdapter, side by side (target/bench/nautilus_py.json)
	scripts/python-test --bench-nautilus

bench-nautilus: ensure-redis ## tradecache-nautilus vs Nautilus's own Redis backend, side by side (table printed, report in target/bench/nautilus.json)
	$(CARGO) bench -p tradecache-nautilus --bench side_by_side

docs-check: ensure-redis ## Run every shell command in docs/monitoring.md and docs/recovery.md against a private Redis + replica + sentinel
	scripts/docs-check

recovery-test: ensure-redis ## Kill the engine and Redis mid-run, restart, verify every acked write came back
	scripts/recovery-test

fuzz: ensure-redis ## Long fuzz runs: tests/it/fuzz.rs (decoding, config, ids), tests/it/model_based.rs (the write path against a model), tests/it/model_purge.rs (purges racing writes) and the kv read-your-writes model (tests/it/kv_consistency.rs), FUZZ_SECONDS (default 60) each; not in CI
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(CARGO) test --profile fuzz --all-features --test it -- fuzz:: model_based:: model_purge:: kv_consistency::kv_near_cache --nocapture --test-threads $(TEST_THREADS)

clean: ## Stop the demo redis and remove build output
	@scripts/redis-down
	$(CARGO) clean
