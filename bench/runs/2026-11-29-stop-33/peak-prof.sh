#!/bin/bash
# usage: peak-prof.sh BINDIR OUT PROGRAM -- sagactl bench --phases saga, with perf record of one
# program over 10 s of the closed-loop peak row (3 s warm-up, 15 s measured).
B=$1; O=$2; P=${3:-orchestrator}
mkdir -p $O
$B/sagactl bench --phases saga --out $O/bench > $O/bench.log 2>&1 &
BP=$!
until pid=$(pgrep -f "^$B/$P" | head -1) && [ -n "$pid" ]; do sleep 0.2; done
# the programs start, become healthy, then the peak row begins: wait for its first "peak" log?
until grep -q "saga" $O/bench.log 2>/dev/null; do sleep 0.2; done
sleep 8
perf record -F 499 --call-graph dwarf,16384 -p $pid -o $O/perf.data > $O/perf.log 2>&1 &
PR=$!
sleep 10
kill -INT $PR; wait $PR
wait $BP
echo rc=$?
