#!/bin/bash
# usage: writes.sh BINDIR TAG ORDERS CONC  -- straces the orchestrator's writes during a demo
B=$1; T=$2; N=${3:-3000}; C=${4:-16}
D=/tmp/wp-$T; NS=wp$T$RANDOM
rm -rf $D; mkdir -p $D
PATH=$B:$PATH $B/sagactl up --data-dir $D --namespace $NS --base-port 18080 > $D/up.log 2>&1 &
SUP=$!
sleep 6
O=$(pgrep -f "^$B/orchestrator" | head -1)
strace -f -p $O -e trace=pwrite64,write,pwritev,fdatasync,fsync,sync_file_range -o $D/strace.txt &
ST=$!
sleep 1
$B/sagactl --api http://127.0.0.1:18080 demo --orders $N --concurrency $C > $D/demo.log 2>&1
kill $ST; sleep 1
echo "$T done"
kill $SUP; sleep 3; kill -9 $SUP; pkill -9 -f "^$B/"; sleep 1; pkill -9 -f "^$B/"; while ss -ltn | grep -q ":1808[0-3] "; do sleep 0.5; done
$B/sagactl purge --namespace $NS --yes > /dev/null 2>&1
