# masflow — see README.md for what each target does.
GO        ?= go
PKGS      := ./...
# Tests need a PostgreSQL server: MASFLOW_TEST_DATABASE_URL, else the
# local cluster that .ci/postgres starts (installing it if needed).
TEST_DB    = $${MASFLOW_TEST_DATABASE_URL:-$$(bash .ci/postgres)}

.PHONY: build test fuzz lint bench demo clean

build:
	$(GO) build -o bin/ ./internal/bench/...

test:
	MASFLOW_TEST_DATABASE_URL="$(TEST_DB)" $(GO) test -count=1 -timeout 20m $(PKGS)

# Longer fuzzing of the parsers (the seed corpus already runs in `make test`).
fuzz:
	$(GO) test -run XXX -fuzz FuzzParseMXID -fuzztime 30s ./internal/mapping
	$(GO) test -run XXX -fuzz FuzzParseIP -fuzztime 30s ./internal/mapping

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "run gofmt -w"; exit 1; }
	$(GO) vet $(PKGS)

# Benchmark: generates a synthetic homeserver (BENCH_USERS users) in the
# test PostgreSQL, imports it, prints rows/s, peak RSS and the ratio to a
# raw COPY of the same volume.
BENCH_USERS ?= 200000
bench:
	MASFLOW_TEST_DATABASE_URL="$(TEST_DB)" $(GO) run ./internal/bench -users $(BENCH_USERS)

# Demo: a generated sample homeserver imported by the engine (until the
# Temporal workflow lands, this runs the import engine directly).
demo:
	MASFLOW_TEST_DATABASE_URL="$(TEST_DB)" $(GO) run ./internal/bench -users 1000 -demo

clean:
	rm -rf bin
