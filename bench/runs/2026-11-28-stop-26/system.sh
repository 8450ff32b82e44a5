# Sourced by the probes of this folder: a whole system of one build on ports 18080-18083, in a
# namespace of its own, and its clean-up.
# usage: start_system BINDIR DATADIR; then $B, $D, $NS and $SUP are set; stop_system.
start_system() {
  B=$1; D=$2; NS=p$(basename "$D" | tr -cd 'a-z0-9')$RANDOM
  rm -rf "$D"; mkdir -p "$D"
  PATH=$B:$PATH "$B/sagactl" up --data-dir "$D" --namespace "$NS" --base-port 18080 > "$D/up.log" 2>&1 &
  SUP=$!
  sleep 6
}
# The pid of one program of the system.
pid_of() { pgrep -f "^$B/$1" | head -1; }
# A demo against the system: ORDERS CONCURRENCY LOGFILE.
demo() { "$B/sagactl" --api http://127.0.0.1:18080 demo --orders "$1" --concurrency "$2" > "$3" 2>&1; }
stop_system() {
  kill $SUP; sleep 3; kill -9 $SUP 2>/dev/null; pkill -9 -f "^$B/"; sleep 1; pkill -9 -f "^$B/"
  while ss -ltn | grep -q ":1808[0-3] "; do sleep 0.5; done
  "$B/sagactl" purge --namespace "$NS" --yes > /dev/null 2>&1
}
