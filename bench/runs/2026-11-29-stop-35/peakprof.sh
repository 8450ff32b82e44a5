#!/bin/bash
# usage: peakprof.sh BINDIR OUT saga|chain -- sagactl bench --phases saga (or chain), and a
# system-wide flat profile (perf record -a, cpu-clock, 8 s) over the closed-loop peak row.
# Read with perf report -i OUT/perf.data --no-children --sort comm (or dso, sym) --stdio
B=$1; O=$2; PH=$3
mkdir -p $O
$B/sagactl bench --phases $PH --out $O/bench > $O/bench.log 2>&1 &
BP=$!
# The phase's header is printed before its programs start; the peak row's load follows at once
# (3 s of warm-up, then the measured seconds), and its result is logged when it ends.
until grep -q "saga design\|REST chain:" $O/bench.log 2>/dev/null; do sleep 0.2; done
T0=$(date +%s.%N)
sleep 4
perf record -a -F 999 -o $O/perf.data -- sleep 8 > $O/perf.log 2>&1
T1=$(date +%s.%N)
until grep -q "peak [0-9]* completed" $O/bench.log 2>/dev/null; do sleep 0.2; done
T2=$(date +%s.%N)
echo "profile from +4 s to +$(echo "$T1 - $T0" | bc) s after the phase began; peak logged at +$(echo "$T2 - $T0" | bc) s" > $O/window.txt
wait $BP
echo rc=$?
