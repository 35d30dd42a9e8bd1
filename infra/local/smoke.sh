#!/usr/bin/env bash
# The purchase story through the ingress, with curl: a seller signs up and
# sells a ticket, a buyer signs up and orders it (retried until the orders
# replica has learned of the ticket), pays with the test card tok_visa, and
# the order reads `complete` (once orders handled payment.created); a live
# stream opened before the sale shows the ticket through the ingress
# unbuffered, then reserved. Where up.sh keeps the mail (LOCAL_CLUSTER_MAIL
# files or sink), the buyer's receipt and the seller's "sold" arrive, each
# once (one Message-ID); with the cluster's SMTP server (sink), also when
# every notifications process is SIGKILLed after the server took the first
# mail and before its answer (the answer is held meanwhile): the mail is
# delivered again under the same Message-ID, nothing is lost and nothing
# new is sent. Fails with the step and the last answer when one does not
# happen in time.
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
trap 'kill "$stream" 2>/dev/null || true; rm -rf "$work"' EXIT
live "the live stream opens" "^event: ready"
step "seller sells a ticket" 201 seller POST /api/tickets '{"title":"Smoke check","price":"12.50"}'
ticket=$(jq -r .id <<<"$body")
live "the live stream shows it" "\"id\":\"$ticket\",.*\"status\":\"available\""
step "buyer signs up" 201 buyer POST /api/users/signup \
  "{\"email\":\"buyer-$run@example.com\",\"password\":\"correct horse battery\"}"
step "buyer orders it (orders replica)" 201 buyer POST /api/orders "{\"ticketId\":\"$ticket\"}"
order=$(jq -r .id <<<"$body")
live "the live stream shows it reserved" "\"id\":\"$ticket\",.*\"status\":\"reserved\""
# The mail of the purchase, where up.sh keeps it (mail_dir): with the
# cluster's SMTP server (LOCAL_CLUSTER_MAIL=sink) its first answer is held
# and the notifications service killed meanwhile (below).
mail_dir=$(cat "$STATE_DIR/mail_dir" 2>/dev/null || true)
mail_mode=$(cat "$STATE_DIR/mail_mode" 2>/dev/null || true)
if [ "$mail_mode" = sink ]; then touch "$mail_dir/hold"; fi
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

# mails_to ADDRESS SUBJECT: the files of the messages to ADDRESS with SUBJECT.
mails_to() {
  grep -l -i -F "To: $1" "$mail_dir"/*.eml 2>/dev/null | xargs -r grep -l -F "Subject: $2" || true
}
# wait_for_mail NAME ADDRESS SUBJECT SECONDS: until a message arrived.
wait_for_mail() {
  local name=$1 address=$2 subject=$3 since
  since=$(date +%s.%N)
  local deadline=$(($(date +%s) + $4))
  until [ -n "$(mails_to "$address" "$subject")" ]; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "FAILED: $name: no message to $address with subject \"$subject\" in $mail_dir:" >&2
      grep -H -i -E '^(To|Subject|Message-ID):' "$mail_dir"/*.eml >&2 || true
      exit 1
    fi
    sleep 0.2
  done
  printf '  %-34s %s s\n' "$name" "$(seconds "$since")"
}
# once NAME ADDRESS SUBJECT COPIES: the message arrived COPIES times, every
# copy with one Message-ID (a copy sent again after a lost answer is the
# same message).
once() {
  local files ids count
  files=$(mails_to "$2" "$3")
  count=$(wc -l <<<"$files")
  ids=$(xargs grep -h -i '^Message-ID:' <<<"$files" | tr -d '\r' | sort -u)
  if [ "$(wc -l <<<"$ids")" != 1 ] || [ "$count" != "$4" ]; then
    echo "FAILED: $1: $count messages (expected $4) with the Message-IDs: $ids" >&2
    exit 1
  fi
  printf '  %-34s %s, %s\n' "$1" "$count message(s)" "$ids"
}
# pending: the mail the notifications instances have not recorded as sent.
pending() {
  local total=0 instance value
  for pid_file in "$STATE_DIR"/pids/notifications-*.pid; do
    instance=$(basename "$pid_file" .pid)
    value=$(curl -s "http://127.0.0.1:$(admin_port_of "${instance/-/:}")/metrics" |
      awk '$1 == "notifications_mail_pending" { print $2 }')
    total=$((total + ${value:-1}))
  done
  echo "$total"
}
buyer="buyer-$run@example.com" seller="seller-$run@example.com"
if [ -n "$mail_dir" ]; then
  mail_wait=$timeout
  if [ "$mail_mode" = sink ]; then
    # The server has taken the first message and holds its answer: the
    # service dies before it can record the message as sent.
    since=$(date +%s.%N)
    deadline=$(($(date +%s) + timeout))
    until [ -n "$(mails_to "$buyer" "Your ticket for Smoke check")$(mails_to "$seller" "Your ticket Smoke check sold")" ]; do
      [ "$(date +%s)" -lt "$deadline" ] || { echo "FAILED: no mail reached the SMTP server" >&2; exit 1; }
      sleep 0.1
    done
    printf '  %-34s %s s\n' "the SMTP server took a mail (held)" "$(seconds "$since")"
    held_receipt=$(mails_to "$buyer" "Your ticket for Smoke check")
    for pid_file in "$STATE_DIR"/pids/notifications-*.pid; do
      "$LOCAL_ROOT/infra/local/ctl.sh" kill "$(basename "$pid_file" .pid)"
    done
    rm -f "$mail_dir/hold"
    for command in "$STATE_DIR"/commands/notifications-*; do
      "$LOCAL_ROOT/infra/local/ctl.sh" start "$(basename "$command")"
    done
    echo "  notifications SIGKILLed and started again"
    # The killed delivery's claim runs out after 90 s before it is retried.
    mail_wait=$((timeout + 120))
  fi
  wait_for_mail "the buyer's receipt arrives" "$buyer" "Your ticket for Smoke check" "$mail_wait"
  wait_for_mail "the seller's \"sold\" arrives" "$seller" "Your ticket Smoke check sold" "$mail_wait"
  receipts=1 solds=1
  if [ "$mail_mode" = sink ]; then
    since=$(date +%s.%N)
    deadline=$(($(date +%s) + mail_wait))
    until [ "$(pending)" = 0 ]; do
      [ "$(date +%s)" -lt "$deadline" ] || { echo "FAILED: mail still pending after $mail_wait s" >&2; exit 1; }
      sleep 0.5
    done
    printf '  %-34s %s s\n' "every mail recorded as sent" "$(seconds "$since")"
    # The held message is delivered again, under its Message-ID.
    if [ -n "$held_receipt" ]; then receipts=2; else solds=2; fi
  fi
  once "the receipt" "$buyer" "Your ticket for Smoke check" "$receipts"
  once "the \"sold\"" "$seller" "Your ticket Smoke check sold" "$solds"
fi
echo "passed in $(seconds "$started") s (ticket $ticket, order $order)"
