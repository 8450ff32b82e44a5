#!/usr/bin/env bash
# The broker step of the contract, shared by `make test`, `make demo` and `make bench`.
#
#   scripts/broker.sh run CMD...   find or start a broker, run CMD with AMQP_URL set, then stop
#                                  the private node if this script started one
#   scripts/broker.sh url          find or start a broker and print its AMQP_URL (leaves it running)
#   scripts/broker.sh stop         stop the private node started by `url`
#
# In order: AMQP_URL if set; else a broker answering on 127.0.0.1:5672; else a private node of
# the installed rabbitmq-server (own port, own data folder under target/, bound to 127.0.0.1);
# else, as root, apt-get install rabbitmq-server and start that; else one line saying what to do.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
state="$here/target/broker"
node_port=${SAGAFLOW_BROKER_PORT:-5699}
dist_port=$((node_port + 20000))
node_name="sagaflow-$node_port@localhost"

log() { echo "broker: $*" >&2; }

answers() { # host port
  timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

url_host_port() { # prints "host port" of an amqp URL
  local rest=${1#*://}
  rest=${rest#*@}
  rest=${rest%%/*}
  local host=${rest%%:*} port=5672
  [[ $rest == *:* ]] && port=${rest##*:}
  echo "$host $port"
}

private_env() {
  export RABBITMQ_NODENAME="$node_name"
  export RABBITMQ_NODE_PORT="$node_port"
  export RABBITMQ_DIST_PORT="$dist_port"
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_MNESIA_BASE="$state/mnesia"
  export RABBITMQ_LOG_BASE="$state/log"
  export RABBITMQ_PID_FILE="$state/node.pid"
  # No management or other plugins: the private node only needs AMQP, and starts faster.
  export RABBITMQ_ENABLED_PLUGINS_FILE="$state/enabled_plugins"
  # Our own config: a system-wide rabbitmq.conf may pin the listener to 5672.
  export RABBITMQ_CONFIG_FILE="$state/rabbitmq.conf"
}

start_private() {
  mkdir -p "$state/mnesia" "$state/log"
  echo "[]." > "$state/enabled_plugins"
  # Our own config file shadows the system one, which may pin a listener to 5672; the
  # listener comes from RABBITMQ_NODE_PORT and RABBITMQ_NODE_IP_ADDRESS.
  echo "# private sagaflow node" > "$state/rabbitmq.conf"
  # As root, the Debian wrapper runs the node as the rabbitmq user: it must own its folders.
  if [ "$(id -u)" = 0 ] && id rabbitmq >/dev/null 2>&1; then chown -R rabbitmq:rabbitmq "$state"; fi
  private_env
  if ! answers 127.0.0.1 "$node_port"; then
    log "starting a private RabbitMQ node $node_name on 127.0.0.1:$node_port"
    rabbitmq-server -detached >/dev/null 2>&1 || true
    for _ in $(seq 1 120); do answers 127.0.0.1 "$node_port" && break; sleep 0.5; done
    answers 127.0.0.1 "$node_port" || { log "the private node did not start; see $state/log"; exit 1; }
    rabbitmqctl -n "$node_name" await_startup >/dev/null 2>&1 || true
    touch "$state/started-by-us"
  fi
  echo "amqp://guest:guest@127.0.0.1:$node_port/%2f"
}

stop_private() {
  [ -f "$state/started-by-us" ] || return 0
  private_env
  log "stopping the private RabbitMQ node $node_name"
  rabbitmqctl -n "$node_name" stop >/dev/null 2>&1 || true
  rm -f "$state/started-by-us"
}

find_or_start() {
  # SAGAFLOW_PRIVATE_BROKER=1 skips the shared broker, to try the private-node path.
  if [ "${SAGAFLOW_PRIVATE_BROKER:-0}" = 1 ]; then start_private; return; fi
  if [ -n "${AMQP_URL:-}" ]; then
    read -r host port < <(url_host_port "$AMQP_URL")
    if answers "$host" "$port"; then echo "$AMQP_URL"; return; fi
    log "AMQP_URL is set to $AMQP_URL, but nothing answers on $host:$port"; exit 1
  fi
  if answers 127.0.0.1 5672; then
    echo "amqp://guest:guest@127.0.0.1:5672/%2f"; return
  fi
  if ! command -v rabbitmq-server >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "no broker found; installing rabbitmq-server (as root, with apt-get)"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >&2
    # The package starts the system node where it can; if it did, use it.
    if answers 127.0.0.1 5672; then echo "amqp://guest:guest@127.0.0.1:5672/%2f"; return; fi
  fi
  if command -v rabbitmq-server >/dev/null 2>&1; then
    start_private; return
  fi
  echo "No RabbitMQ broker: set AMQP_URL to one, or install RabbitMQ (sudo apt-get install rabbitmq-server) and run this again." >&2
  exit 1
}

case "${1:-}" in
  url) find_or_start ;;
  stop) stop_private ;;
  run)
    shift
    AMQP_URL=$(find_or_start)
    export AMQP_URL
    log "using $AMQP_URL"
    trap stop_private EXIT
    "$@"
    ;;
  *) echo "usage: $0 run CMD... | url | stop" >&2; exit 2 ;;
esac
