#!/usr/bin/env bash
# The Kafka step of `make test`: the Kafka system tests and `sagactl chaos --bus kafka` start
# private tansu brokers (tansu: a Kafka-protocol broker written in Rust, on crates.io) with its
# SQLite engine, so that a restart keeps topics, records and consumer offsets. Builds it once,
# with cargo, from the sources published on crates.io and with tansu's own Cargo.lock, plus one
# small patch (devkit/tansu/storage-loop.patch says why), as `tansu-sagaflow`. A machine that
# has this build skips the step. About 15 minutes on two cores; no Java, nothing downloaded
# from anywhere but crates.io.
set -euo pipefail

version=0.6.0
root="$(cd "$(dirname "$0")/.." && pwd)"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
bin="$cargo_home/bin/tansu-sagaflow"
patch_file="$root/devkit/tansu/storage-loop.patch"
stamp="$version-$(sha256sum "$patch_file" | cut -c1-16)"

if [ -x "$bin" ] && [ "$(cat "$bin.stamp" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi
echo "kafka: building tansu $version with its SQLite engine and our patch (once; about 15 minutes)" >&2
work="$root/target/tansu-build"
rm -rf "$work"
mkdir -p "$work/fetch/src"
# The published sources, through cargo. (tansu has no library; cargo fetches it all the same.)
cat > "$work/fetch/Cargo.toml" <<TOML
[package]
name = "fetch-tansu"
version = "0.0.0"
edition = "2021"
publish = false

[workspace]

[dependencies]
tansu = "=$version"
tansu-storage = "=$version"
TOML
touch "$work/fetch/src/lib.rs"
(cd "$work/fetch" && cargo fetch --quiet 2>/dev/null || cargo fetch)
crate() { find "$cargo_home/registry/cache" -name "$1-$version.crate" | head -1; }
for name in tansu tansu-storage; do
  file="$(crate "$name")"
  [ -n "$file" ] || { echo "kafka: cargo did not fetch $name $version" >&2; exit 1; }
  tar -xzf "$file" -C "$work"
done
patch --quiet -p1 -d "$work/tansu-storage-$version" < "$patch_file"
cat >> "$work/tansu-$version/Cargo.toml" <<TOML

[workspace]

[patch.crates-io]
tansu-storage = { path = "../tansu-storage-$version" }
TOML
(cd "$work/tansu-$version" && cargo build --release --features libsql --quiet)
mkdir -p "$(dirname "$bin")"
install -m 755 "$work/tansu-$version/target/release/tansu" "$bin"
echo "$stamp" > "$bin.stamp"
rm -rf "$work"
"$bin" --version >/dev/null
