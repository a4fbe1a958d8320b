# masflow — see README.md for what each target does.
GO        ?= go
PKGS      := ./...
# Tests need a PostgreSQL server: MASFLOW_TEST_DATABASE_URL, else the
# local cluster that .ci/postgres starts (installing it if needed).
TEST_DB    = $${MASFLOW_TEST_DATABASE_URL:-$$(bash .ci/postgres)}
# The official Temporal CLI (dev server + Web UI), built from the Go
# module proxy: the newest release that `go install` can build.
TEMPORAL_CLI_VERSION := v1.5.1
WORKFLOWCHECK        := go.temporal.io/sdk/contrib/tools/workflowcheck@v0.6.0

# The Temporal server the cluster test runs, and its SQL schema tool: the
# newest release whose module builds with our Go (v1.32.2 needs Go
# 1.26.10), built from the Go module proxy into build/ once.
TEMPORAL_SERVER_VERSION := v1.32.1
TEMPORAL_SERVER_DIR     := build/temporal-server-$(TEMPORAL_SERVER_VERSION)

# The Synapse the end-to-end test migrates: pinned, from PyPI, into a
# virtualenv kept in build/ (reinstalled when the pin changes).
SYNAPSE_VERSION := 1.163.2
SYNAPSE_VENV    := build/synapse-venv
PYTHON          ?= python3

.PHONY: build test e2e cluster-test fuzz lint bench demo clean

build: bin/temporal
	$(GO) build -o bin/ ./starter ./worker

# About ten minutes on two cores the first time; kept in bin/ afterwards.
bin/temporal:
	GOBIN=$(CURDIR)/bin $(GO) install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_CLI_VERSION)

test: bin/temporal
	MASFLOW_TEST_DATABASE_URL="$(TEST_DB)" $(GO) test -count=1 -timeout 30m $(PKGS)

# End-to-end: the whole migration of a real Synapse on loopback, every
# step done by masflow (command controller), MAS played by a stand-in
# that answers Synapse's token introspection from the migrated database.
e2e: bin/temporal $(SYNAPSE_VENV)/.installed-$(SYNAPSE_VERSION)
	MASFLOW_TEST_DATABASE_URL="$(TEST_DB)" MASFLOW_E2E_SYNAPSE_VENV="$(CURDIR)/$(SYNAPSE_VENV)" \
		$(GO) test -tags e2e -count=1 -timeout 20m -v ./internal/e2e/

$(SYNAPSE_VENV)/.installed-$(SYNAPSE_VERSION):
	rm -rf $(SYNAPSE_VENV)
	$(PYTHON) -m venv $(SYNAPSE_VENV)
	$(SYNAPSE_VENV)/bin/pip install --quiet --disable-pip-version-check 'matrix-synapse[postgres,oidc]==$(SYNAPSE_VERSION)'
	touch $@

# A production-like cluster: the pinned Temporal server on PostgreSQL
# (persistence and visibility), two worker processes and the starter; a
# worker and then the server SIGKILLed mid-import; the MAS tables must be
# exactly a clean run's.
cluster-test: bin/temporal $(TEMPORAL_SERVER_DIR)/.built
	MASFLOW_TEST_DATABASE_URL="$(TEST_DB)" MASFLOW_CLUSTER_SERVER_VERSION=$(TEMPORAL_SERVER_VERSION) \
		MASFLOW_CLUSTER_SERVER_BIN="$(CURDIR)/$(TEMPORAL_SERVER_DIR)" \
		$(GO) test -tags cluster -count=1 -timeout 15m -v ./internal/clustertest/

# About five minutes on two cores the first time (4 min 40 s from an empty
# Go build cache); kept in build/.
$(TEMPORAL_SERVER_DIR)/.built:
	GOBIN="$(CURDIR)/$(TEMPORAL_SERVER_DIR)" $(GO) install go.temporal.io/server/cmd/server@$(TEMPORAL_SERVER_VERSION) \
		go.temporal.io/server/cmd/tools/sql@$(TEMPORAL_SERVER_VERSION)
	touch $@

# Longer fuzzing of the parsers (the seed corpus already runs in `make test`).
fuzz:
	$(GO) test -run XXX -fuzz FuzzParseMXID -fuzztime 30s ./internal/mapping
	$(GO) test -run XXX -fuzz FuzzParseIP -fuzztime 30s ./internal/mapping

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "run gofmt -w"; exit 1; }
	$(GO) vet $(PKGS)
	$(GO) vet -tags e2e ./internal/e2e/
	$(GO) vet -tags cluster ./internal/clustertest/
	$(GO) run $(WORKFLOWCHECK) ./workflows/...

# Benchmark: generates a synthetic homeserver (BENCH_USERS users) in the
# test PostgreSQL once, then times the production path (`starter migrate
# --dev --steps import`, and a separate dev server + worker + starter),
# the engine alone, and a raw COPY of the same rows into unindexed,
# unconstrained tables; prints rows/s, phases, peak RSS and the ratios.
# BENCH_FLAGS adds flags, e.g. -json, -profile DIR, -batch, -parallel.
BENCH_USERS ?= 200000
BENCH_FLAGS ?=
bench: build
	MASFLOW_TEST_DATABASE_URL="$(TEST_DB)" $(GO) run ./internal/bench -users $(BENCH_USERS) $(BENCH_FLAGS)

# Demo: a generated sample homeserver (kept in .masflow/sample) migrated
# by the workflow on the embedded Temporal dev server; run it again to
# attach to (or print) the same migration.
DEMO_USERS ?= 1000
demo: bin/temporal
	export MASFLOW_TEST_DATABASE_URL="$(TEST_DB)"; \
	settings=$$($(GO) run ./internal/sample/cmd -dir .masflow/sample -users $(DEMO_USERS)) && \
	$(GO) run ./starter migrate --dev -c $$settings --steps advise,import,reconcile

clean:
	rm -rf bin .masflow build
