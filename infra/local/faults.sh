#!/usr/bin/env bash
# The fault tests of the running local cluster (issue 13): each scenario is
# a run of the invariant checker (`ticketing-tools check`) with one fault, and
# prints what was acknowledged and what arrived; any violation fails it.
#
#   infra/local/faults.sh [--duration 30s] [SCENARIO ...]
#
#   kill-orders  SIGKILL of both orders instances while tickets are sold:
#                selling keeps answering, and every ticket sold becomes
#                orderable soon after the restart
#   nats-node    one of the three NATS nodes stopped during traffic:
#                nothing lost, no 5xx but the contract's 503
#   postgres     PostgreSQL stopped for 5 s, then started: 503s meanwhile,
#                recovery without restarting any service. WARNING: this
#                stops the machine's PostgreSQL server (pg_ctlcluster),
#                unless LOCAL_CLUSTER_PG_DATA names the private server the
#                cluster runs on (up.sh with DATABASE_URL pointing at it)
#   replicas     no fault, two replicas of every consumer
#                (LOCAL_CLUSTER_REPLICAS=2 for up.sh): every effect once
#
# Default: all four, in this order. The cluster must be up (up.sh, with
# LOCAL_CLUSTER_REPLICAS=2 for `replicas`); ORDER_EXPIRATION_SECONDS=10
# and PAYMENT_RECONCILE_SECONDS=5 for up.sh keep the drains short.
# TICKETING_BIN: the binary (default: the release build); TOOLS_BIN: the
# checker (default: ticketing-tools beside it).
set -euo pipefail
# shellcheck source=infra/local/lib.sh
source "$(dirname "$0")/lib.sh"

duration=30s
scenarios=()
while [ $# -gt 0 ]; do
  case $1 in
    --duration)
      duration=${2:-}
      shift
      ;;
    kill-orders | nats-node | postgres | replicas) scenarios+=("$1") ;;
    *) help_or_refuse "$1" ;;
  esac
  shift
done
[ ${#scenarios[@]} -gt 0 ] || scenarios=(kill-orders nats-node postgres replicas)

bin="${TICKETING_BIN:-${CARGO_TARGET_DIR:-$LOCAL_ROOT/target}/release/ticketing}"
[ -x "$bin" ] || { echo "no binary $bin (set TICKETING_BIN)" >&2; exit 1; }
# The invariant checker: beside the product binary unless TOOLS_BIN says.
tools="${TOOLS_BIN:-$(dirname "$bin")/ticketing-tools}"
[ -x "$tools" ] || { echo "no binary $tools (cargo build -p tools, or set TOOLS_BIN)" >&2; exit 1; }
[ -s "$STATE_DIR/instances" ] || { echo "the local cluster is not up (infra/local/up.sh)" >&2; exit 1; }

check() {
  "$tools" check --cluster-dir "$STATE_DIR" --ctl "$LOCAL_ROOT/infra/local/ctl.sh" \
    --duration "$duration" "$@"
}

failed=()
for scenario in "${scenarios[@]}"; do
  printf '\n== fault scenario: %s\n' "$scenario"
  case $scenario in
    kill-orders) check --nemesis kill-orders || failed+=("$scenario") ;;
    nats-node)
      [ -s "$STATE_DIR/commands/nats-3" ] ||
        { echo "needs the three NATS nodes of up.sh (--nats-nodes 3, no NATS_URL)" >&2; exit 1; }
      check --nemesis nats-node || failed+=("$scenario")
      ;;
    postgres)
      # PostgreSQL runs again at the end, whatever happens.
      trap '"$LOCAL_ROOT/infra/local/ctl.sh" start postgres' EXIT
      check --nemesis postgres || failed+=("$scenario")
      "$LOCAL_ROOT/infra/local/ctl.sh" start postgres
      trap - EXIT
      ;;
    replicas)
      for service in auth tickets orders payments expiration notifications; do
        grep -qw "$service:2" "$STATE_DIR/instances" ||
          { echo "needs two replicas of $service: up.sh with LOCAL_CLUSTER_REPLICAS=2" >&2; exit 1; }
      done
      check --nemesis none || failed+=("$scenario")
      ;;
  esac
done

echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "fault scenarios failed: ${failed[*]}" >&2
  exit 1
fi
echo "fault scenarios passed: ${scenarios[*]}"
