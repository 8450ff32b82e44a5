#!/bin/bash
# usage: hops-strace.sh BINDIR  -- strace -ttt of the orchestrator and payment over eight orders
# placed one at a time: when each received its delivery, synced its store and published.
# strace slows every traced call, so read the gaps as an upper bound.
. "$(dirname "$0")/../2026-11-28-stop-26/system.sh"
start_system "$1" /tmp/hops-strace
python3 "$(dirname "$0")/one-at-a-time.py" 10 > /dev/null
O=$(pid_of orchestrator); P=$(pid_of payment)
T='trace=sendto,recvfrom,writev,readv,read,write,fdatasync,fsync'
strace -f -ttt -e $T -o $D/orchestrator.st -p "$O" & S1=$!
strace -f -ttt -e $T -o $D/payment.st -p "$P" & S2=$!
sleep 2
python3 "$(dirname "$0")/one-at-a-time.py" 8
sleep 1; kill $S1 $S2; sleep 1
stop_system
(sed 's/^/orchestrator /' $D/orchestrator.st; sed 's/^/payment      /' $D/payment.st) | sort -k3 -n \
  | grep -E 'recvfrom\(1[45], "\\1|sendto\(1[45]|fdatasync' | cut -c1-120
