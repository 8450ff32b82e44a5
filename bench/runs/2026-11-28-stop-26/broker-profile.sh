#!/bin/bash
# usage: broker-profile.sh BINDIR  -- perf record of the shared RabbitMQ node (beam.smp) over a
# demo at 8 in flight, after a warm-up, and its CPU from /proc
. "$(dirname "$0")/system.sh"
start_system "$1" /tmp/rp-1
demo 2000 8 $D/warm.log
R=$(pgrep -f beam.smp | head -1)
S0=$(cut -d' ' -f14,15 /proc/$R/stat)
perf record -F 499 -g -p $R -o $D/perf.data > $D/perf.log 2>&1 &
PR=$!
sleep 1
T0=$(date +%s.%N); demo 6000 8 $D/demo.log; T1=$(date +%s.%N)
S1=$(cut -d' ' -f14,15 /proc/$R/stat)
kill -INT $PR; wait $PR
stop_system
grep "orders in" $D/demo.log
echo "rabbit utime stime ticks $S0 -> $S1 over $(echo "$T1 - $T0" | bc) s"
