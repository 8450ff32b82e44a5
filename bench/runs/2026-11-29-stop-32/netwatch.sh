#!/bin/bash
# every second: time and the TCP counters that a 1-s stall from lost SYNs or retransmits would move
export NSTAT_HISTORY=/tmp/nstat.hist
nstat -n >/dev/null
while true; do
  sleep 1
  echo "$(date +%s.%N | cut -c1-14) $(nstat -z TcpExtListenOverflows TcpExtListenDrops TcpRetransSegs TcpExtTCPTimeouts TcpExtTCPSynRetrans TcpExtTCPLostRetransmit TcpExtTCPLossProbes 2>/dev/null | awk 'NR>1{printf "%s=%s ", $1, $2}')"
done
