# shellcheck shell=bash disable=SC2034 # variables for the scripts sourcing it
# Shared by up.sh, down.sh and smoke.sh (source this file): where the local
# cluster keeps its state, which ports its processes use, and how to stop
# them. docs/OPERATIONS.md ("The local cluster") describes the whole.

LOCAL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# Everything the cluster writes: logs, pids, generated configurations, the
# generated JWT key, the NATS and Redis data. Gitignored.
STATE_DIR="${LOCAL_CLUSTER_DIR:-$LOCAL_ROOT/.local-cluster}"
# The ingress (nginx), the one address a browser or the smoke check uses.
INGRESS_PORT="${LOCAL_CLUSTER_PORT:-8080}"
# Every other process listens on BASE_PORT + an offset (see port_of).
BASE_PORT="${LOCAL_CLUSTER_BASE_PORT:-7100}"

# The processes of the system: service:replica. LOCAL_CLUSTER_REPLICAS=2
# runs two of every backend service (two replicas of each consumer, for the
# fault tests' "every effect once"). up.sh records the list it started in
# $STATE_DIR/instances, which down.sh and ctl.sh read.
configured_instances() {
  if [ "${LOCAL_CLUSTER_REPLICAS:-}" = 2 ]; then
    INSTANCES=(auth:1 auth:2 tickets:1 tickets:2 orders:1 orders:2 payments:1 payments:2
      expiration:1 expiration:2 notifications:1 notifications:2 web:1)
  else
    INSTANCES=(auth:1 tickets:1 tickets:2 orders:1 orders:2 payments:1 expiration:1
      notifications:1 web:1)
  fi
}
if [ -s "$STATE_DIR/instances" ]; then
  read -ra INSTANCES <"$STATE_DIR/instances"
else
  configured_instances
fi

# The port of an instance: auth:1 → base+1, tickets:2 → base+12, ...
port_of() {
  local service=${1%%:*} replica=${1##*:} offset
  case $service in
    auth) offset=0 ;;
    tickets) offset=10 ;;
    orders) offset=20 ;;
    payments) offset=30 ;;
    expiration) offset=40 ;;
    web) offset=50 ;;
    redis) offset=60 ;;
    nats) offset=70 ;;
    nats-route) offset=80 ;;
    nats-monitor) offset=90 ;;
    fake-stripe) offset=95 ;;
    mail-sink) offset=97 ;;
    notifications) offset=100 ;;
    *) echo "no port for $service" >&2; return 1 ;;
  esac
  echo $((BASE_PORT + offset + replica))
}

# The operators' port of a service instance (ADMIN_PORT: metrics,
# readiness): five above its own, auth:1 → base+6.
admin_port_of() {
  echo $(($(port_of "$1") + 5))
}

# The pid of a process the cluster started, if it still runs: the pid file
# exists and the process behind it runs the expected program (a pid reused
# by something else after a reboot is not ours).
running_pid() {
  local file="$STATE_DIR/pids/$1.pid" pid
  [ -f "$file" ] || return 1
  pid=$(cat "$file")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2" || return 1
  echo "$pid"
}

# Whether a process runs: it exists and is not a zombie waiting for its
# parent (init, once up.sh has exited) to collect it.
alive() {
  local state
  state=$(sed 's/.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
  [ "$state" != Z ]
}

# Stops one process the cluster started (SIGTERM, then SIGKILL after 15 s)
# and removes its pid file.
stop_process() {
  local name=$1 program=$2 pid
  if pid=$(running_pid "$name" "$program"); then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      echo "$name did not stop in 15 s: killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$STATE_DIR/pids/$name.pid"
}

# The program each pid file belongs to, for running_pid.
program_of() {
  case $1 in
    nginx) echo nginx ;;
    redis) echo redis-server ;;
    nats-*) echo nats-server ;;
    fake-stripe) echo "ticketing-tools fake-stripe" ;;
    mail-sink) echo "mail-sink.py" ;;
    *) echo "serve ${1%-*}" ;;
  esac
}

# A URL (or comma-separated URLs) without user or password, for printing.
# shellcheck disable=SC2001 # a regular expression
redacted() { sed 's#//[^@/,]*@#//#g' <<<"$1"; }

# The arguments a script does not take: --help prints its header comment
# (down to `set -euo pipefail`), anything else fails.
help_or_refuse() {
  case $1 in
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
}

# The configuration variables of the binary: every `env = "NAME"` of the
# product crates' clap arguments (common::config's shared ones and each
# service's Settings).
configuration_variables() {
  local crate
  for crate in common messaging platform auth tickets orders payments expiration notifications \
    web ticketing; do
    grep -rhoE 'env = "[A-Z][A-Z0-9_]*"' "$LOCAL_ROOT/crates/$crate/src"
  done | sed 's/env = "\(.*\)"/\1/' | sort -u
}

# Drops this cluster's databases (<DATABASE_PREFIX>_<service>) on the
# PostgreSQL server it used, both recorded by up.sh; never the ticketing_*
# ones of the default deployment, tests and benchmarks.
drop_databases() {
  local url prefix
  url=$(cat "$STATE_DIR/database_url" 2>/dev/null) || return 0
  prefix=$(cat "$STATE_DIR/database_prefix" 2>/dev/null) || return 0
  if [ "$prefix" = ticketing ]; then
    echo "not dropping the ticketing_* databases: set DATABASE_PREFIX to this cluster's own" >&2
    return 1
  fi
  for service in auth tickets orders payments expiration notifications; do
    psql "$url" -qc "DROP DATABASE IF EXISTS \"${prefix}_$service\" WITH (FORCE)" 2>&1 |
      grep -v 'does not exist, skipping' || true
  done
}
