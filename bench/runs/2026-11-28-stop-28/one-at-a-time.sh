#!/bin/bash
# usage: one-at-a-time.sh BINDIR [ORDERS]  -- orders placed one at a time on an idle system; the
# orchestrator's own history times each step's round trip (placed -> payment's reply applied ->
# inventory's -> notification's). The first five orders are a warm-up.
. "$(dirname "$0")/../2026-11-28-stop-26/system.sh"
start_system "$1" /tmp/one-at-a-time
python3 "$(dirname "$0")/one-at-a-time.py" "${2:-40}"
stop_system
