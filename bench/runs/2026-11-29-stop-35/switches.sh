#!/bin/bash
# usage: switches.sh BINDIR OUT -- sagactl bench --phases saga; 3 s into the 25 % row, each
# thread's context switches (voluntary + involuntary, /proc/PID/task/TID/status) over 5 s,
# for each program and the broker, grouped by thread name.
B=$1; O=$2
mkdir -p $O
$B/sagactl bench --phases saga --open-loop-base 1700 --out $O/bench > $O/bench.log 2>&1 &
BP=$!
until grep -q "peak [0-9]* completed" $O/bench.log 2>/dev/null; do sleep 0.2; done
sleep 3
snap() {
  for p in orchestrator payment inventory notification; do
    pid=$(pgrep -f "^/tmp/rel-[a-z0-9]*/$p" | head -1)
    for t in /proc/$pid/task/*; do
      n=$(cat $t/comm 2>/dev/null); v=$(awk '/^voluntary_ctxt/{v=$2}/^nonvoluntary_ctxt/{n=$2}END{print v+n}' $t/status 2>/dev/null)
      echo "$p ${t##*/} $n $v"
    done
  done
}
snap > $O/snap0.txt; sleep 5; snap > $O/snap1.txt
wait $BP
python3 - $O <<'PY'
import sys, collections
o = sys.argv[1]
def load(f):
    d = {}
    for line in open(f):
        parts = line.split()
        if len(parts) < 4: continue
        p, tid, v = parts[0], parts[1], parts[-1]
        name = ' '.join(parts[2:-1])
        d[(p, tid)] = (name, int(v))
    return d
a, b = load(f'{o}/snap0.txt'), load(f'{o}/snap1.txt')
g = collections.Counter()
for k, (name, v) in b.items():
    g[(k[0], name.rstrip('0123456789-'))] += v - a.get(k, (name, 0))[1]
for (p, n), v in sorted(g.items(), key=lambda x: -x[1]):
    print(f'{p:13} {n:22} {v/5:8.0f}/s')
PY
