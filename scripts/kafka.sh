#!/usr/bin/env bash
# The Kafka step of `make test`: the Kafka system tests and `sagactl chaos --bus kafka` start
# private tansu brokers (tansu: a Kafka-protocol broker written in Rust, on crates.io) with its
# SQLite engine, so that a restart keeps topics, records and consumer offsets. Installs it once
# with cargo, from crates.io and with tansu's own Cargo.lock; a machine that has it skips this.
# About 15 minutes on two cores; no Java, nothing downloaded from anywhere but crates.io.
set -euo pipefail

version=0.6.0
bin="${CARGO_HOME:-$HOME/.cargo}/bin/tansu"

if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -qx "tansu $version"; then
  exit 0
fi
echo "kafka: installing tansu $version with its SQLite engine (once; about 15 minutes)" >&2
cargo install tansu --version "$version" --locked --features libsql --quiet
"$bin" --version >/dev/null || { echo "kafka: tansu is still missing after the install" >&2; exit 1; }
