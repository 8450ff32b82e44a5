#!/bin/bash
# every second: the CPU ticks each of the system's programs used in that second, and its state
# (R running, S sleeping, D waiting on the disk), to see which one stood still during a stall
declare -A last
while true; do
  sleep 1
  line="$(date +%s.%N | cut -c1-14)"
  for name in orchestrator payment inventory notification beam.smp sagactl rest-chain-hop; do
    for pid in $(pgrep -x "$name" 2>/dev/null | head -3); do
      read -r st ut stt < <(awk '{print $3, $14, $15}' /proc/$pid/stat 2>/dev/null)
      [ -z "$ut" ] && continue
      t=$((ut + stt)); d=$(( t - ${last[$pid]:-$t} )); last[$pid]=$t
      line="$line $name:$pid:$st:$d"
    done
  done
  echo "$line"
done
