#!/bin/bash
# usage: jit-profile.sh  -- from the repository root, after a release build.
# Runs `sagactl bench --phases saga` with its private RabbitMQ node started with the Erlang JIT's
# perf support (+JPperf true: a /tmp/perf-<pid>.map for JIT-compiled code), and records that
# node with perf for 30 s, from 45 s after it appears (during the open-loop rows), with its CPU.
set -e
HERE=$(cd "$(dirname "$0")" && pwd)
D=/tmp/jp; mkdir -p $D
pgrep -f beam.smp > $D/shared.pids || true
(RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+JPperf true" target/release/sagactl bench --phases saga --out $D/out > $D/bench.log 2>&1 &)
for i in $(seq 60); do sleep 1; P=$(pgrep -f beam.smp | grep -vxFf $D/shared.pids | head -1 || true); [ -n "$P" ] && break; done
sleep 45
S0=$(cut -d' ' -f14,15 /proc/$P/stat)
perf record -F 499 -g -p $P -o $D/perf.data -- sleep 30 > $D/perf.log 2>&1
S1=$(cut -d' ' -f14,15 /proc/$P/stat)
echo "private node $P utime stime ticks $S0 -> $S1 over 30 s"
perf script -i $D/perf.data -F comm,tid,ip,sym > $D/script.txt 2>/dev/null
(cd $D && python3 "$HERE/jit-profile-shares.py")
