#!/usr/bin/env bash
# `make up`: builds the services, makes sure NATS with JetStream runs (installing it if
# needed), starts user-, order- and notification-service with the local defaults (SQLite files
# and the mail outbox under ./data), waits until each is ready and prints how to use them.
# Ctrl-C stops everything it started. DETACH=1 returns once ready (`make down` stops).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh

SERVICES=(user-service order-service notification-service)
PORTS=(3001 3002 3003)
PROFILE=${PROFILE:-release}
DATA=$PWD/data
mkdir -p "$DATA/logs" "$DATA/pids"

running() { [ -f "$DATA/pids/$1.pid" ] && kill -0 "$(cat "$DATA/pids/$1.pid")" 2>/dev/null; }

for i in "${!SERVICES[@]}"; do
  if running "${SERVICES[$i]}"; then
    echo "${SERVICES[$i]} is already running (pid $(cat "$DATA/pids/${SERVICES[$i]}.pid")); \`make down\` stops it." >&2
    exit 1
  fi
  if port_open "${PORTS[$i]}"; then
    echo "Port ${PORTS[$i]} (${SERVICES[$i]}) is already taken by another program:" >&2
    (command -v ss >/dev/null && ss -ltnp "sport = :${PORTS[$i]}" | tail -n +2) >&2 || true
    echo "Stop it, or run the service elsewhere with ${SERVICES[$i]^^}__HTTP__PORT (dashes as underscores)." >&2
    exit 1
  fi
done

echo "==> building ($PROFILE)"
cargo build --workspace --bins --profile "$PROFILE" --quiet
bin_dir=${CARGO_TARGET_DIR:-target}/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")

echo "==> NATS"
ensure_nats "$DATA/nats"

# A stable signing key and admin password, made once, so tokens survive restarts.
if [ ! -f "$DATA/jwt.pem" ] && command -v openssl >/dev/null; then
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$DATA/jwt.pem" 2>/dev/null
  chmod 600 "$DATA/jwt.pem"
fi
if [ ! -f "$DATA/admin-password" ]; then
  (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$DATA/admin-password")
fi
ADMIN_EMAIL=admin@platform.local
ADMIN_PASSWORD=$(cat "$DATA/admin-password")

export APP_ENV=${APP_ENV:-local}
# Local runs listen on loopback only (containers and pods use the 0.0.0.0 default).
for prefix in USER_SERVICE ORDER_SERVICE NOTIFICATION_SERVICE; do
  export "${prefix}__NATS__URL=nats://127.0.0.1:$NATS_PORT" "${prefix}__HTTP__HOST=${HTTP_HOST:-127.0.0.1}"
done
export USER_SERVICE__AUTH__ADMIN_EMAIL=$ADMIN_EMAIL USER_SERVICE__AUTH__ADMIN_PASSWORD=$ADMIN_PASSWORD
[ -f "$DATA/jwt.pem" ] && export USER_SERVICE__AUTH__SIGNING_KEY_PATH=$DATA/jwt.pem
export NOTIFICATION_SERVICE__MAIL__OUTBOX_DIR=${NOTIFICATION_SERVICE__MAIL__OUTBOX_DIR:-$DATA/outbox}

stop_all() {
  trap - INT TERM EXIT
  echo
  echo "==> stopping"
  local svc
  for svc in "${SERVICES[@]}"; do
    running "$svc" && kill -TERM "$(cat "$DATA/pids/$svc.pid")" 2>/dev/null || true
  done
  for svc in "${SERVICES[@]}"; do
    if [ -f "$DATA/pids/$svc.pid" ]; then
      local pid; pid=$(cat "$DATA/pids/$svc.pid")
      for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      rm -f "$DATA/pids/$svc.pid"
    fi
  done
  echo "stopped (NATS keeps running; data stays in ./data)"
}

started=$(date +%s%N)
for i in "${!SERVICES[@]}"; do
  svc=${SERVICES[$i]}
  (cd "$PWD" && CONFIG_DIR=$svc/config exec "$bin_dir/$svc") >>"$DATA/logs/$svc.log" 2>&1 &
  echo $! >"$DATA/pids/$svc.pid"
done
[ "${DETACH:-0}" = 1 ] || trap stop_all INT TERM EXIT

for i in "${!SERVICES[@]}"; do
  svc=${SERVICES[$i]} port=${PORTS[$i]}
  deadline=$((SECONDS + 60))
  until curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1; do
    if ! running "$svc"; then
      echo "$svc exited during start-up; last lines of data/logs/$svc.log:" >&2
      tail -n 15 "$DATA/logs/$svc.log" >&2
      exit 1
    fi
    [ $SECONDS -lt $deadline ] || { echo "$svc not ready after 60 s (see data/logs/$svc.log)" >&2; exit 1; }
    sleep 0.1
  done
done
elapsed_ms=$((($(date +%s%N) - started) / 1000000))

cat <<INFO

The platform is up (ready in ${elapsed_ms} ms):
  user-service          http://127.0.0.1:3001   (OpenAPI: /openapi.json)
  order-service         http://127.0.0.1:3002
  notification-service  http://127.0.0.1:3003
  metrics               http://127.0.0.1:300{1,2,3}/metrics
  logs                  data/logs/*.log        mail: data/outbox/*.eml

Admin login: $ADMIN_EMAIL / $ADMIN_PASSWORD

Try:
  USER_ID=\$(curl -s -X POST localhost:3001/api/users -H 'content-type: application/json' \\
       -d '{"name":"Ada","email":"ada@example.com","password":"analytical"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["id"])')
  TOKEN=\$(curl -s -X POST localhost:3001/api/auth/login -H 'content-type: application/json' \\
       -d '{"email":"ada@example.com","password":"analytical"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["token"])')
  curl -s -X POST localhost:3002/api/orders -H "authorization: Bearer \$TOKEN" -H 'content-type: application/json' \\
       -d "{\\"user_id\\":\\"\$USER_ID\\",\\"items\\":[{\\"product_id\\":\\"book\\",\\"quantity\\":3,\\"price\\":29.99}],\\"shipping_address\\":\\"1 Main St\\"}"
  curl -s localhost:3003/api/users/\$USER_ID/notifications -H "authorization: Bearer \$TOKEN"
  make demo      # the whole story, scripted

INFO
if [ "${DETACH:-0}" = 1 ]; then
  echo "Running in the background; \`make down\` stops it."
  exit 0
fi
echo "Press Ctrl-C to stop."
wait
