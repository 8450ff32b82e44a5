#!/bin/bash
# usage: prof.sh BINDIR TAG ORDERS CONC PROGRAM  -- perf record of one program over a demo,
# after a 3,000-order warm-up
. "$(dirname "$0")/system.sh"
T=$2; N=${3:-3000}; C=${4:-16}; P=${5:-orchestrator}
start_system "$1" /tmp/pp-$T
O=$(pid_of $P)
demo 3000 $C $D/warm.log
perf record -F 299 --call-graph dwarf,16384 -p $O -o $D/perf.data > $D/perf.log 2>&1 &
PR=$!
sleep 1
demo $N $C $D/demo.log
kill -INT $PR; wait $PR
echo "$T done"; grep "orders in" $D/demo.log
stop_system
