#!/usr/bin/env bash
# Kills, stops and starts single processes of the running local cluster:
# the hooks of the fault tests (infra/local/faults.sh) and of the
# invariant checker's nemesis (`ticketing-tools check`). A process is started
# again exactly as up.sh started it (its command in commands/<name>, the
# services' environment in environment), and `start` returns once it is
# ready.
#
#   infra/local/ctl.sh kill|stop|start|pid PROCESS
#
#   kill   SIGKILL, then wait until it is gone (a crash: nothing drains)
#   stop   SIGTERM, then wait until it exited (SIGKILL after 15 s)
#   start  start it again, wait until it answers /readyz (a service) or
#          /healthz (a NATS node); a process still running is left alone
#   pid    print its pid (fails when it does not run)
#
# PROCESS: a service instance as in the logs (auth-1, tickets-2, orders-1,
# payments-1, expiration-1, notifications-1, web-1, ...), nats-1 to nats-3, redis, nginx,
# fake-stripe (`ticketing-tools fake-stripe`, when up.sh started it), or
# postgres: the PostgreSQL server the cluster uses (only stop and start;
# with LOCAL_CLUSTER_PG_DATA set, the private server of that data directory
# through pg_ctl, otherwise the machine's server through pg_ctlcluster).
set -euo pipefail
# shellcheck source=infra/local/lib.sh
source "$(dirname "$0")/lib.sh"

usage() { echo "usage: infra/local/ctl.sh kill|stop|start|pid PROCESS" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1 name=$2
timeout="${LOCAL_CLUSTER_TIMEOUT:-120}"

postgres() {
  if [ -n "${LOCAL_CLUSTER_PG_DATA:-}" ]; then
    local pg_ctl=() binary
    for binary in /usr/lib/postgresql/*/bin/pg_ctl; do :; done
    # PostgreSQL refuses to run as root: as the data directory's owner.
    [ "$(id -u)" = 0 ] && pg_ctl=(runuser -u "$(stat -c %U "$LOCAL_CLUSTER_PG_DATA")" --)
    pg_ctl+=("$binary" -D "$LOCAL_CLUSTER_PG_DATA" -w)
    case $1 in
      stop) "${pg_ctl[@]}" -m fast stop >/dev/null ;;
      start)
        "${pg_ctl[@]}" status >/dev/null ||
          "${pg_ctl[@]}" -l "$LOCAL_CLUSTER_PG_DATA/server.log" -o "-c listen_addresses=127.0.0.1" start >/dev/null
        ;;
    esac
  else
    # The machine's server: only when it is the one the cluster uses.
    local url versions=(/etc/postgresql/*)
    url=$(cat "$STATE_DIR/database_url" 2>/dev/null || true)
    case $url in
      *[@/]127.0.0.1:5432/* | *[@/]localhost:5432/*) ;;
      *)
        echo "the cluster's PostgreSQL is not the machine's (127.0.0.1:5432): set LOCAL_CLUSTER_PG_DATA" >&2
        exit 1
        ;;
    esac
    local cluster=("$(basename "${versions[0]}")" main)
    case $1 in
      stop) pg_ctlcluster --skip-systemctl-redirect "${cluster[@]}" stop ;;
      start)
        pg_ctlcluster "${cluster[@]}" status >/dev/null 2>&1 ||
          pg_ctlcluster --skip-systemctl-redirect "${cluster[@]}" start
        ;;
    esac
  fi
}

if [ "$name" = postgres ]; then
  case $action in
    stop | start) postgres "$action" ;;
    *) echo "postgres: only stop and start" >&2; exit 2 ;;
  esac
  exit 0
fi

program=$(program_of "$name")
[ -s "$STATE_DIR/commands/$name" ] || { echo "no process $name in $STATE_DIR/commands" >&2; exit 1; }

# The address that tells whether the process is ready, if it has one.
ready_url() {
  case $name in
    nats-*) echo "http://127.0.0.1:$(port_of "nats-monitor:${name#nats-}")/healthz" ;;
    fake-stripe) echo "http://127.0.0.1:$(port_of fake-stripe:0)/healthz" ;;
    redis | nginx) ;;
    *) echo "http://127.0.0.1:$(admin_port_of "${name%-*}:${name##*-}")/readyz" ;;
  esac
}

case $action in
  pid) running_pid "$name" "$program" ;;
  kill)
    if pid=$(running_pid "$name" "$program"); then
      kill -KILL "$pid"
      while alive "$pid"; do sleep 0.05; done
    fi
    rm -f "$STATE_DIR/pids/$name.pid"
    ;;
  stop) stop_process "$name" "$program" ;;
  start)
    if ! running_pid "$name" "$program" >/dev/null; then
      (
        # shellcheck source=/dev/null # written by up.sh
        source "$STATE_DIR/environment"
        command=$(cat "$STATE_DIR/commands/$name")
        eval "nohup $command >>\"\$STATE_DIR/logs/\$name.log\" 2>&1 &"
        echo $! >"$STATE_DIR/pids/$name.pid"
      )
    fi
    url=$(ready_url)
    [ -n "$url" ] || exit 0
    deadline=$(($(date +%s) + timeout))
    pid=$(cat "$STATE_DIR/pids/$name.pid")
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" = 200 ]; do
      # Whether the process is still there, not whether it already runs the
      # program: between fork and exec (long on a loaded machine) its
      # command line is still this script's (the one-hour soak once called
      # a process that had not exec'd yet "exited").
      alive "$pid" || { echo "$name exited; see logs/$name.log" >&2; exit 1; }
      [ "$(date +%s)" -lt "$deadline" ] || { echo "$name is not ready after $timeout s" >&2; exit 1; }
      sleep 0.1
    done
    ;;
  *) usage ;;
esac
