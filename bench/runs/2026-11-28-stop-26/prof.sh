#!/bin/bash
# usage: prof.sh BINDIR TAG ORDERS CONC PROGRAM
B=$1; T=$2; N=${3:-3000}; C=${4:-16}; P=${5:-orchestrator}
D=/tmp/pp-$T; NS=pp$T$RANDOM
rm -rf $D; mkdir -p $D
PATH=$B:$PATH $B/sagactl up --data-dir $D --namespace $NS --base-port 18080 > $D/up.log 2>&1 &
SUP=$!
sleep 6
O=$(pgrep -f "^$B/$P" | head -1)
$B/sagactl --api http://127.0.0.1:18080 demo --orders 3000 --concurrency $C > $D/warm.log 2>&1
perf record -F 299 --call-graph dwarf,16384 -p $O -o $D/perf.data > $D/perf.log 2>&1 &
PR=$!
sleep 1
$B/sagactl --api http://127.0.0.1:18080 demo --orders $N --concurrency $C > $D/demo.log 2>&1
kill -INT $PR; wait $PR
echo "$T done"; grep "orders in" $D/demo.log
kill $SUP; sleep 3; kill -9 $SUP 2>/dev/null; pkill -9 -f "^$B/"; sleep 1; pkill -9 -f "^$B/"; while ss -ltn | grep -q ":1808[0-3] "; do sleep 0.5; done
$B/sagactl purge --namespace $NS --yes > /dev/null 2>&1
