#!/usr/bin/env bash
# `make demo`: the main story against a running platform (`make up`): register a user, log in,
# place an order, move it through its statuses, list the user's notifications, show the mails.
set -euo pipefail
cd "$(dirname "$0")/.."

USERS=${USERS_URL:-http://127.0.0.1:3001}
ORDERS=${ORDERS_URL:-http://127.0.0.1:3002}
NOTIFICATIONS=${NOTIFICATIONS_URL:-http://127.0.0.1:3003}
ADMIN_EMAIL=${ADMIN_EMAIL:-admin@platform.local}
ADMIN_PASSWORD=${ADMIN_PASSWORD:-$(cat data/admin-password 2>/dev/null || true)}
OUTBOX=${NOTIFICATION_SERVICE__MAIL__OUTBOX_DIR:-data/outbox}

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval('d' + sys.argv[1]))" "$1"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
call() { # METHOD URL [BODY] [TOKEN]: prints the response, fails on an HTTP error
  local args=(-sS -X "$1" "$2" -H 'content-type: application/json' -w '\n%{http_code}')
  [ -n "${3:-}" ] && args+=(-d "$3")
  [ -n "${4:-}" ] && args+=(-H "authorization: Bearer $4")
  local out code
  out=$(curl "${args[@]}")
  code=${out##*$'\n'}
  out=${out%$'\n'*}
  echo "$out" >&2
  [ "${code:0:1}" = 2 ] || { echo "demo: $1 $2 answered $code" >&2; exit 1; }
  echo "$out"
}

for url in "$USERS" "$ORDERS" "$NOTIFICATIONS"; do
  curl -fsS "$url/ready" >/dev/null || { echo "demo: $url is not ready; start the platform with \`make up\`" >&2; exit 1; }
done

email="ada.$(date +%s)@example.com"
step "register $email"
user=$(call POST "$USERS/api/users" "{\"name\":\"Ada Lovelace\",\"email\":\"$email\",\"password\":\"analytical-engine\"}")
user_id=$(echo "$user" | json '["data"]["id"]')

step "log in"
token=$(call POST "$USERS/api/auth/login" "{\"email\":\"$email\",\"password\":\"analytical-engine\"}" | json '["data"]["token"]')
admin=$(call POST "$USERS/api/auth/login" "{\"email\":\"$ADMIN_EMAIL\",\"password\":\"$ADMIN_PASSWORD\"}" | json '["data"]["token"]')

step "place an order: 3 x 29.99 + 1 x 0.10"
order=$(call POST "$ORDERS/api/orders" \
  "{\"user_id\":\"$user_id\",\"items\":[{\"product_id\":\"difference-engine-manual\",\"quantity\":3,\"price\":29.99},{\"product_id\":\"punch-card\",\"quantity\":1,\"price\":0.10}],\"shipping_address\":\"12 St James's Square, London\"}" \
  "$token")
order_id=$(echo "$order" | json '["id"]')
echo "total_amount: $(echo "$order" | json '["total_amount"]') (exactly 90.07)"

for status in processing shipped delivered; do
  step "order -> $status"
  call PATCH "$ORDERS/api/orders/$order_id?status=$status" "" "$admin" >/dev/null
done

step "notifications of $email"
for _ in $(seq 1 50); do
  count=$(curl -fsS "$NOTIFICATIONS/api/users/$user_id/notifications" -H "authorization: Bearer $token" | json '["count"]')
  [ "$count" -ge 5 ] && break
  sleep 0.1
done
curl -fsS "$NOTIFICATIONS/api/users/$user_id/notifications" -H "authorization: Bearer $token" |
  python3 -c 'import json,sys
for n in json.load(sys.stdin)["data"]:
    print("  %-28s %-8s %s" % (n["type"], n["status"], n["title"]))'

step "mails to $email"
if [ -d "$OUTBOX" ]; then
  grep -l "$email" "$OUTBOX"/* 2>/dev/null | while read -r mail; do
    echo "  $mail: $(grep -m1 '^Subject:' "$mail")"
  done
else
  echo "  (sent over SMTP: see your mail server)"
fi
