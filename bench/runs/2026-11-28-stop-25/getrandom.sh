#!/bin/bash
B=$1; T=$2; N=${3:-2000}
D=/tmp/rp-$T; NS=rp$T$RANDOM
rm -rf $D; mkdir -p $D
PATH=$B:$PATH $B/sagactl up --data-dir $D --namespace $NS --base-port 18080 > $D/up.log 2>&1 &
SUP=$!
sleep 6
SP=""
for p in orchestrator payment inventory notification; do pid=$(pgrep -f "^$B/$p" | head -1); strace -f -c -e trace=getrandom -p $pid -o $D/strace-$p.txt > /dev/null 2>&1 & SP="$SP $!"; done
sleep 1
$B/sagactl --api http://127.0.0.1:18080 demo --orders $N --concurrency 16 > $D/demo.log 2>&1
kill -INT $SP; sleep 1
for p in orchestrator payment inventory notification; do echo "$T $p: $(grep getrandom $D/strace-$p.txt | awk -v n=$N '{printf "%d calls, %.2f per saga", $4, $4/n}')"; done
kill $SUP; sleep 3; pkill -f "^$B/" ; sleep 1
$B/sagactl purge --namespace $NS --yes > /dev/null 2>&1
