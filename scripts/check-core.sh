#!/usr/bin/env bash
# The saga core must stay pure: no async runtime, no broker client, no store, no web framework.
# Fails if any of them enters its dependency tree, directly or through another crate.
set -euo pipefail
tree=$(cargo tree -p sagaflow-saga -e normal --prefix none)
bad=$(echo "$tree" | grep -E '^(tokio|lapin|sled|axum|hyper|mio|async-[a-z]+|futures[a-z-]*|chrono|time) ' || true)
if [ -n "$bad" ]; then
  echo "sagaflow-saga must not depend on IO or clocks, but its tree has:"; echo "$bad"; exit 1
fi
# Nor may its source reach for a clock or a global random source.
if grep -rnE 'SystemTime|Instant::now|thread_rng|rand::random|std::(fs|net|thread)' saga/src; then
  echo "sagaflow-saga reads a clock, a global random source or does IO (lines above)"; exit 1
fi
echo "saga core is pure: $(echo "$tree" | sort -u | wc -l) crates in its tree, none of them IO or clocks"
