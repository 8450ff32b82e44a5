# The README's two commands are `make demo` and `make test`; CI runs `.ci/run`, which runs
# `make test`. Both first find or start a RabbitMQ broker (scripts/broker.sh).

CARGO ?= cargo
# Property tests run this many generated cases per property.
export PROPTEST_CASES ?= 1000

.PHONY: test demo bench bench-smoke build lint fmt check-core test-suite unit-tests system-tests

## make test: the browser, Kafka, Python and broker steps, then lint, the purity check and
## every test.
test:
	scripts/browser.sh
	scripts/kafka.sh
	scripts/python.sh
	scripts/broker.sh run $(MAKE) --no-print-directory test-suite

## make demo: builds, starts everything, places a few hundred orders, prints a summary.
## sagactl does the broker step itself and stops everything it started. `make demo KEEP=1`
## leaves the system running and prints the console's address; Ctrl-C stops it.
demo:
	$(CARGO) build --release --workspace --bins
	target/release/sagactl demo --orders 300 --seed 42 $(if $(KEEP),--keep)

## make bench: builds for release and measures throughput, latency and cost on this machine.
## Writes target/bench/results/report.txt, report.json and latency.svg, which git ignores (about
## fifteen minutes: it fills a store with a million sagas). A run the README quotes is copied
## into bench/runs/ by hand, so committed results change only when someone means them to.
bench:
	$(CARGO) build --release --workspace --bins
	target/release/sagactl bench --out target/bench/results

build:
	$(CARGO) build --workspace --bins

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

check-core:
	scripts/check-core.sh

# What `make test` runs once a broker is reachable (AMQP_URL is set by scripts/broker.sh).
test-suite: lint check-core build unit-tests system-tests bench-smoke

unit-tests:
	$(CARGO) test --workspace --exclude sagaflow-saga
	@echo "--- saga core: scenarios and property tests ($(PROPTEST_CASES) cases per property)"
	$(CARGO) test -p sagaflow-saga -- --show-output

system-tests:
	@true

# Every phase of the bench in miniature, so it cannot rot; it checks what it can without timing
# anything (every phase measured something; the saga lost nothing while Payment was down).
bench-smoke:
	target/debug/sagactl bench --smoke --out target/bench-smoke
