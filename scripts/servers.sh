# Shell helpers shared by .ci/run and scripts/bench (source this file): make
# sure the local servers the tests and the scaled benchmark need are running
# (PostgreSQL on 5432, Redis on 6379, NATS with JetStream on 4222), starting
# them, and installing them from Debian when missing.

log() { printf '\n==> %s\n' "$*"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {
  local port=$1 name=$2
  for _ in $(seq 1 100); do
    port_open "$port" && return 0
    sleep 0.2
  done
  echo "$name did not start on port $port" >&2
  return 1
}

ensure_postgres() {
  if port_open 5432; then return; fi
  log "starting PostgreSQL"
  if ! command -v pg_ctlcluster >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  wait_for_port 5432 PostgreSQL
}

ensure_redis() {
  if port_open 6379; then return; fi
  log "starting Redis"
  if ! command -v redis-server >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  wait_for_port 6379 Redis
}

ensure_nats() {
  if port_open 4222; then return; fi
  log "starting NATS with JetStream"
  if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
  fi
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server
  wait_for_port 4222 NATS
}

# Deletes what the deployment that `ticketing` runs by default keeps on the
# local servers besides its ticketing_* databases: the JetStream stream
# TICKETING (with its consumers) and the Redis keys ticketing:*. .ci/run
# drops those databases before the tests (a scaled `scripts/bench` run
# leaves them behind); a stream and consumers kept without them redeliver
# events about orders the new databases never had, which wait their retries
# out and hold back the tests' own events.
reset_default_deployment_bus() {
  local reply=""
  exec 3<>/dev/tcp/127.0.0.1/4222
  printf 'CONNECT {"verbose":false}\r\nSUB _INBOX.reset 1\r\nPUB $JS.API.STREAM.DELETE.TICKETING _INBOX.reset 0\r\n\r\n' >&3
  while IFS= read -r -t 5 line <&3; do
    case "$line" in
      MSG*) IFS= read -r -t 5 reply <&3; break ;;
      PING*) printf 'PONG\r\n' >&3 ;;
    esac
  done
  exec 3<&-
  echo "JetStream stream TICKETING: ${reply:-no answer}"
  if command -v redis-cli >/dev/null; then
    redis-cli --scan --pattern 'ticketing:*' | xargs -r redis-cli del >/dev/null
  fi
}
