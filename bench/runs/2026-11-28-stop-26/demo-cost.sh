#!/bin/bash
# usage: demo-cost.sh BINDIR TAG ORDERS CONC  -- each program's CPU, bytes written, context
# switches and minor faults per saga over a demo (stop 25's probe, with the faults added)
. "$(dirname "$0")/system.sh"
T=$2; N=${3:-3000}; C=${4:-4}
start_system "$1" /tmp/lp-$T
declare -A PIDS
for p in orchestrator payment inventory notification; do PIDS[$p]=$(pid_of $p); done
snap() { for p in orchestrator payment inventory notification; do pid=${PIDS[$p]}; s=($(cut -d' ' -f14,15,10 /proc/$pid/stat)); wb=$(grep ^write_bytes /proc/$pid/io | awk '{print $2}'); cs=$(cat /proc/$pid/task/*/status 2>/dev/null | grep ctxt | awk '{s+=$2} END{print s}'); echo "$p $((${s[1]}+${s[2]})) $wb $cs ${s[0]}"; done; }
snap > $D/before
S=$(date +%s.%N)
demo $N $C $D/demo.log
E=$(date +%s.%N)
sleep 2
snap > $D/after
sleep 10
snap > $D/idle
curl -s http://127.0.0.1:18080/metrics > $D/metrics.txt
for port in 18081 18082 18083; do curl -s http://127.0.0.1:$port/metrics > $D/metrics-$port.txt; done
echo "$T: $N orders in $(echo "$E - $S" | bc) s"
paste $D/before $D/after | awk -v n=$N '{printf "  %-13s cpu %.3f ms  wbytes %.1f KiB  ctx %.1f  minflt %.1f (per saga)\n", $1, ($7-$2)*10/n, ($8-$3)/1024/n, ($9-$4)/n, ($10-$5)/n}'
echo '  idle 10 s after (per second):'; paste $D/after $D/idle | awk '{printf "  %-13s cpu %.1f %%  wbytes %.1f KiB/s  ctx %.1f/s\n", $1, ($7-$2)*10/10, ($8-$3)/1024/10, ($9-$4)/10}'
stop_system
