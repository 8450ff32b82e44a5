#!/bin/bash
# usage: probe25.sh BINDIR OUT prof|trace|writes -- sagactl bench --phases saga, and one probe
# over the 25 % row (3 s into it):
# - prof: a system-wide flat profile (perf record -a, cpu-clock, 8 s). Read with
#   perf report -i OUT/perf.data --no-children --sort comm (or sym) --stdio
# - trace: `perf trace -s` of the orchestrator and of payment (each thread's system calls,
#   counts and times, 5 s): OUT/trace-*.txt
# - writes: every pwrite64, sync_file_range and fdatasync of the orchestrator with its call
#   stack (4 s). Read with
#   perf script -i OUT/perf.data -F comm,tid,event,ip,sym | python3 writers.py
B=$1; O=$2; PROBE=$3
mkdir -p $O
$B/sagactl bench --phases saga --out $O/bench > $O/bench.log 2>&1 &
BP=$!
until grep -q "peak [0-9]* completed" $O/bench.log 2>/dev/null; do sleep 0.2; done
sleep 3
pid_of() { pgrep -f "^$B/$1" | head -1; }
case $PROBE in
  prof) perf record -a -F 999 -o $O/perf.data -- sleep 8 > $O/perf.log 2>&1 ;;
  trace)
    for p in orchestrator payment; do
      timeout -s INT 5 perf trace -s -p $(pid_of $p) -o $O/trace-$p.txt > /dev/null 2>&1 &
    done ;;
  writes)
    perf record -e syscalls:sys_enter_pwrite64 -e syscalls:sys_enter_fdatasync \
      -e syscalls:sys_enter_sync_file_range --call-graph dwarf,8192 -p $(pid_of orchestrator) \
      -o $O/perf.data -- sleep 4 > $O/perf.log 2>&1 ;;
esac
wait $BP
echo rc=$?
