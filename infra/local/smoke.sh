#!/usr/bin/env bash
# The purchase story through the ingress, with curl: a seller signs up and
# sells a ticket, a buyer signs up and orders it (retried until the orders
# replica has learned of the ticket), pays with the test card tok_visa, and
# the order reads `complete` (once orders handled payment.created); a live
# stream opened before the sale shows the ticket through the ingress
# unbuffered, then reserved. Fails
# with the step and the last answer when one does not happen in time.
#
#   infra/local/smoke.sh [URL]     default http://localhost:$LOCAL_CLUSTER_PORT (8080)
#
# Needs curl and jq. Payments must take test cards (PAYMENT_PROCESSOR=fake,
# up.sh's default, or a Stripe test-mode key).
set -euo pipefail
# shellcheck source=infra/local/lib.sh
source "$(dirname "$0")/lib.sh"

url="${1:-http://localhost:$INGRESS_PORT}"
timeout="${SMOKE_TIMEOUT:-30}"
for program in curl jq; do
  command -v "$program" >/dev/null || { echo "smoke.sh needs $program" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

started=$(date +%s.%N)
seconds() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }'; }

# call JAR METHOD PATH [BODY]: the status in $status, the body in $body.
call() {
  local jar=$1 method=$2 path=$3 data=${4:-}
  local args=(-s -o "$work/body" -w '%{http_code}' -b "$work/$jar" -c "$work/$jar" -X "$method")
  if [ -n "$data" ]; then args+=(-H 'content-type: application/json' -d "$data"); fi
  status=$(curl "${args[@]}" "$url$path") || status=000
  body=$(cat "$work/body" 2>/dev/null || true)
}

# step NAME EXPECTED_STATUS JAR METHOD PATH [BODY]: retried until the status
# is the expected one, for at most $timeout seconds.
step() {
  local name=$1 expected=$2 since
  shift 2
  since=$(date +%s.%N)
  local deadline=$(($(date +%s) + timeout))
  until call "$@" && [ "$status" = "$expected" ]; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "FAILED: $name: expected $expected, last answer $status $body" >&2
      exit 1
    fi
    sleep 0.1
  done
  printf '  %-34s %s s\n' "$name" "$(seconds "$since")"
}

run=$(date +%s%N)
echo "The purchase story through $url:"
step "seller signs up" 201 seller POST /api/users/signup \
  "{\"email\":\"seller-$run@example.com\",\"password\":\"correct horse battery\"}"
# live NAME PATTERN: waits until the live stream has shown PATTERN.
live() {
  local name=$1 pattern=$2 since
  since=$(date +%s.%N)
  local deadline=$(($(date +%s) + timeout))
  until grep -q "$pattern" "$work/events"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "FAILED: $name: the live stream showed:" >&2
      cat "$work/events" >&2
      exit 1
    fi
    sleep 0.1
  done
  printf '  %-34s %s s\n' "$name" "$(seconds "$since")"
}
curl -sN --max-time "$((timeout * 3))" "$url/api/tickets/events" >"$work/events" 2>/dev/null &
stream=$!
trap 'kill "$stream" 2>/dev/null; rm -rf "$work"' EXIT
live "the live stream opens" "^event: ready"
step "seller sells a ticket" 201 seller POST /api/tickets '{"title":"Smoke check","price":"12.50"}'
ticket=$(jq -r .id <<<"$body")
live "the live stream shows it" "\"id\":\"$ticket\",.*\"status\":\"available\""
step "buyer signs up" 201 buyer POST /api/users/signup \
  "{\"email\":\"buyer-$run@example.com\",\"password\":\"correct horse battery\"}"
step "buyer orders it (orders replica)" 201 buyer POST /api/orders "{\"ticketId\":\"$ticket\"}"
order=$(jq -r .id <<<"$body")
live "the live stream shows it reserved" "\"id\":\"$ticket\",.*\"status\":\"reserved\""
step "buyer pays (payments replica)" 201 buyer POST /api/payments \
  "{\"orderId\":\"$order\",\"token\":\"tok_visa\"}"
since=$(date +%s.%N)
deadline=$(($(date +%s) + timeout))
until call buyer GET "/api/orders/$order" && [ "$(jq -r .status <<<"$body" 2>/dev/null)" = complete ]; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "FAILED: the order is not complete after ${timeout} s: $status $body" >&2
    exit 1
  fi
  sleep 0.1
done
printf '  %-34s %s s\n' "the order reads complete" "$(seconds "$since")"
echo "passed in $(seconds "$started") s (ticket $ticket, order $order)"
