#!/usr/bin/env bash
# Stops what infra/local/up.sh started: the services first (they finish
# their requests and hand their outbox to NATS), then nginx, NATS, Redis
# and the fake Stripe of the cluster's own. The machine's PostgreSQL, and
# any server that was running before up.sh, keep running.
#
#   infra/local/down.sh [--clean]
#
#   --clean  also drop the cluster's databases (<DATABASE_PREFIX>_*) and
#            delete its NATS and Redis data and the fake Stripe's state
#            (what up.sh --clean does).
set -euo pipefail
# shellcheck source=infra/local/lib.sh
source "$(dirname "$0")/lib.sh"

clean=false
case ${1:-} in
  --clean) clean=true ;;
  "") ;;
  *) echo "usage: infra/local/down.sh [--clean]" >&2; exit 2 ;;
esac

[ -d "$STATE_DIR/pids" ] || { echo "nothing to stop: no $STATE_DIR/pids"; exit 0; }
services=()
for instance in "${INSTANCES[@]}"; do services+=("${instance/:/-}"); done
# The services in parallel (each may take a few seconds to drain).
for name in "${services[@]}"; do stop_process "$name" "$(program_of "$name")" & done
wait
for name in nginx nats-1 nats-2 nats-3 redis fake-stripe; do stop_process "$name" "$(program_of "$name")" & done
wait

if $clean; then
  drop_databases
  rm -rf "$STATE_DIR/nats" "$STATE_DIR/redis" "$STATE_DIR/stripe"
fi
echo "the local cluster is stopped"
