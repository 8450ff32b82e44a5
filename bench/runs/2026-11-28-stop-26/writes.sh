#!/bin/bash
# usage: writes.sh BINDIR TAG ORDERS CONC  -- straces the orchestrator's writes during a demo
. "$(dirname "$0")/system.sh"
T=$2; N=${3:-3000}; C=${4:-16}
start_system "$1" /tmp/wp-$T
strace -f -p "$(pid_of orchestrator)" -e trace=pwrite64,write,pwritev,fdatasync,fsync,sync_file_range -o $D/strace.txt &
ST=$!
sleep 1
demo $N $C $D/demo.log
kill $ST; sleep 1
echo "$T done"
stop_system
