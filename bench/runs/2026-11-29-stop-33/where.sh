#!/bin/bash
# usage: [SAMPLES=50] where.sh BINDIR OUT [peak|25] -- sagactl bench --phases saga, and over 10 s
# of one row (the closed-loop peak, or the 25 % row): each program's /metrics at the start and
# the end, and each thread's /proc/<pid>/task/<tid>/schedstat (CPU time, run-queue wait,
# slices), RabbitMQ's node included. With SAMPLES=N, also N samples 200 ms apart of every
# queue's ready and unacked messages (the private node's per-object metrics) and of the
# programs' gauges. Read with sched.py, hist.py and queues.py.
B=$1; O=$2; ROW=${3:-peak}
mkdir -p $O
$B/sagactl bench --phases saga --out $O/bench > $O/bench.log 2>&1 &
BP=$!
until grep -q "data and logs in" $O/bench.log 2>/dev/null; do sleep 0.2; done
DIR=$(grep -o "data and logs in .*" $O/bench.log | awk '{print $5}')
if [ $ROW = peak ]; then
  # The programs start and become healthy, then 3 s of warm-up: 8 s in, the peak is measured.
  until [ -n "$(pgrep -f "^$B/orchestrator")" ]; do sleep 0.2; done
  sleep 8
else
  until grep -q "peak [0-9]* completed" $O/bench.log 2>/dev/null; do sleep 0.2; done
  sleep 3
fi
CONF=$(find $DIR -name rabbitmq.conf | head -1)
PORT=$(grep prometheus.tcp.port $CONF | awk '{print $3}')
BEAM=$(pgrep -f "beam.smp" | while read p; do tr '\0' ' ' < /proc/$p/cmdline | grep -q "$(basename $DIR)" && echo $p; done)
PORTS=$(ss -ltnp | grep -E "orchestrator|payment|inventory|notification" | grep -o "127.0.0.1:[0-9]*" | cut -d: -f2 | sort -u)
snap() {
  for pid in $(pgrep -f "^$B/(orchestrator|payment|inventory|notification|sagactl)") $BEAM; do
    for t in /proc/$pid/task/*; do
      echo "$pid $(cat /proc/$pid/comm) $(basename $t) $(tr ' ' _ < $t/comm) $(cat $t/schedstat 2>/dev/null)"
    done
  done > $O/sched-$1.txt
  for p in $PORTS; do curl -s http://127.0.0.1:$p/metrics > $O/$1-$p.txt; done
}
snap first
if [ "${SAMPLES:-0}" = 0 ]; then sleep 10; fi
for i in $(seq 1 ${SAMPLES:-0}); do
  t=$(date +%s.%N)
  curl -s "http://127.0.0.1:$PORT/metrics/per-object" | grep -E "^rabbitmq_queue_messages_(ready|unacked)\{" | sed "s/^/$t broker /" >> $O/samples.txt
  for p in $PORTS; do
    curl -s "http://127.0.0.1:$p/metrics" | grep -E "^sagaflow_(outbox_depth|sagas\{)" | sed "s/^/$t $p /" >> $O/samples.txt
  done
  sleep 0.2
done
snap last
wait $BP
grep -o "peak [0-9]* completed/s.*" $O/bench.log
