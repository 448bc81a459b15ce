#!/usr/bin/env bash
# Renders the platform-overview dashboard with real data into docs/images/platform-overview.png.
#
#   scripts/dashboard-snapshot.sh            # ~8 minutes: 6 of traffic, then the picture
#   SNAPSHOT_MINUTES=3 SNAPSHOT_OUT=/tmp/overview.png SNAPSHOT_CAPTURES=/tmp/metrics scripts/dashboard-snapshot.sh
#
# 1. uses the platform if `make up` runs it; otherwise starts it (DETACH=1 scripts/up.sh) and
#    stops it again at the end (with NATS, if this script's start-up started NATS);
# 2. runs Debian's Prometheus server (the package promtool comes from, unpacked into .tools/bin)
#    on 127.0.0.1 with observability/prometheus/prometheus.local.yml and its rules, storage in
#    a temporary folder;
# 3. drives traffic on loopback for SNAPSHOT_MINUTES: `make demo` in a loop plus reads, 404s and
#    failed logins between runs;
# 4. captures each service's /metrics and runs the metric-name cross-check on them;
# 5. evaluates every panel query of observability/grafana/dashboards/platform-overview.json
#    over the window (observability/grafana/render_snapshot.py, matplotlib) and prints which
#    rules evaluated and which alerts were pending or firing.
# Everything it starts it stops, on success, failure or Ctrl-C. Exit status 1 when the
# cross-check or the picture failed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
# shellcheck source=SCRIPTDIR/lib/tools.sh
source scripts/lib/tools.sh
# shellcheck source=SCRIPTDIR/lib/deps.sh
source scripts/lib/deps.sh

MINUTES=${SNAPSHOT_MINUTES:-6}
OUT=${SNAPSHOT_OUT:-docs/images/platform-overview.png}
DASHBOARD=observability/grafana/dashboards/platform-overview.json
# The Prometheus server of the same Debian package as promtool (scripts/lib/tools.sh).
PROMETHEUS_SHA256=814f078f68af9ad7b644fd25299211399c8f19ad9adf8b0a1b86a3bd9755baa0
PORTS=(3001 3002 3003)
SERVICES=(user-service order-service notification-service)

tmp=$(mktemp -d)
# Where the services' /metrics are saved (for METRICS_CAPTURES='DIR/*.txt' scripts/validate.sh 50).
CAPTURES=${SNAPSHOT_CAPTURES:-$tmp/metrics}
prom_pid='' started_platform=0 started_nats=0
# shellcheck disable=SC2329 # called by the EXIT trap
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$prom_pid" ] && kill -0 "$prom_pid" 2>/dev/null; then
    kill -TERM "$prom_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$prom_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  if [ "$started_platform" = 1 ]; then
    WITH_NATS=$started_nats scripts/down.sh || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '==> %s\n' "$*" >&2; }

# --- tools ----------------------------------------------------------------------------------------
# shellcheck disable=SC2329 # called through _tools_locked
_install_prometheus() {
  local bin=$TOOLS_DIR/bin/prometheus dl
  _tools_sha_ok "$bin" "$PROMETHEUS_SHA256" && return 0
  dl=$(mktemp -d) || return 1
  (
    cd "$dl" || exit 1
    apt-get download "prometheus=$TOOLS_PROMETHEUS_DEB" ||
      { apt-get update && apt-get download "prometheus=$TOOLS_PROMETHEUS_DEB"; }
  ) >>"$TOOLS_LOG" 2>&1 &&
    dpkg-deb --fsys-tarfile "$dl"/prometheus_*.deb | tar -x -C "$dl" ./usr/bin/prometheus 2>>"$TOOLS_LOG" &&
    _tools_sha_ok "$dl/usr/bin/prometheus" "$PROMETHEUS_SHA256" &&
    install -m 0755 "$dl/usr/bin/prometheus" "$bin"
  local rc=$?
  rm -rf "$dl"
  return "$rc"
}
say "tools: prometheus $TOOLS_PROMETHEUS_DEB, matplotlib"
_tools_locked _install_prometheus || _tools_fail "prometheus server install failed"
tools_pip matplotlib==3.11.2 yamllint==1.38.0  # yamllint brings PyYAML

# --- the platform ---------------------------------------------------------------------------------
ready() { curl -fsS -m 2 "http://127.0.0.1:$1/ready" >/dev/null 2>&1; }
if ready 3001 && ready 3002 && ready 3003; then
  say "platform: already running, using it"
else
  port_open "$NATS_PORT" || started_nats=1
  say "platform: starting it (DETACH=1 scripts/up.sh); stopped again at the end"
  started_platform=1
  DETACH=1 scripts/up.sh >"$tmp/up.log" 2>&1 || { cat "$tmp/up.log" >&2; exit 1; }
fi

# --- Prometheus -----------------------------------------------------------------------------------
prom_port=''
for p in $(seq 9090 9099); do port_open "$p" || { prom_port=$p; break; }; done
[ -n "$prom_port" ] || { echo "no free port in 9090-9099 for Prometheus" >&2; exit 1; }
# The local config as it is, with the rule files made absolute and the self-scrape on our port.
python3 - "$repo/observability/prometheus/prometheus.local.yml" "$tmp/prometheus.yml" "$prom_port" <<'PY'
import os, sys, yaml
src, dst, port = sys.argv[1:]
cfg = yaml.safe_load(open(src))
cfg["rule_files"] = [os.path.join(os.path.dirname(src), r) for r in cfg["rule_files"]]
for job in cfg["scrape_configs"]:
    if job["job_name"] == "prometheus":
        job["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
yaml.safe_dump(cfg, open(dst, "w"), sort_keys=False)
PY
prom=http://127.0.0.1:$prom_port
say "prometheus: $prom (storage $tmp/tsdb)"
"$TOOLS_DIR/bin/prometheus" --config.file="$tmp/prometheus.yml" --web.listen-address="127.0.0.1:$prom_port" \
  --storage.tsdb.path="$tmp/tsdb" --storage.tsdb.retention.time=1d >"$tmp/prometheus.log" 2>&1 &
prom_pid=$!
deadline=$((SECONDS + 30))
until curl -fsS -m 2 "$prom/-/ready" >/dev/null 2>&1; do
  kill -0 "$prom_pid" 2>/dev/null || { tail -n 20 "$tmp/prometheus.log" >&2; exit 1; }
  [ $SECONDS -lt $deadline ] || { echo "prometheus not ready after 30 s" >&2; exit 1; }
  sleep 0.5
done
start=$(date +%s)

# --- traffic --------------------------------------------------------------------------------------
say "traffic: $MINUTES minute(s) of make demo and reads on 127.0.0.1:3001-3003"
email="snapshot.$(date +%s)@example.com"
curl -fsS -m 10 -X POST http://127.0.0.1:3001/api/users -H 'content-type: application/json' \
  -d "{\"name\":\"Snapshot\",\"email\":\"$email\",\"password\":\"snapshot-pass\"}" >"$tmp/user.json"
user_id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["data"]["id"])' "$tmp/user.json")
token=$(curl -fsS -m 10 -X POST http://127.0.0.1:3001/api/auth/login -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"snapshot-pass\"}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["token"])')
get() { curl -s -o /dev/null -m 5 -H "authorization: Bearer $token" "$@" || true; }
end_traffic=$((SECONDS + MINUTES * 60))
demos=0 demo_failures=0 i=0
while [ $SECONDS -lt $end_traffic ]; do
  if [ $((i % 25)) = 0 ]; then
    if timeout 60 scripts/demo.sh >"$tmp/demo.log" 2>&1; then
      demos=$((demos + 1))
    else
      demo_failures=$((demo_failures + 1))
      cp "$tmp/demo.log" "$tmp/demo.failed.log"
    fi
  fi
  get "http://127.0.0.1:3001/api/users/$user_id"
  get "http://127.0.0.1:3002/api/orders"
  get "http://127.0.0.1:3002/api/users/$user_id/orders"
  get "http://127.0.0.1:3003/api/users/$user_id/notifications"
  get "http://127.0.0.1:3002/api/orders/00000000-0000-0000-0000-000000000000"  # 404
  [ $((i % 10)) = 5 ] && curl -s -o /dev/null -m 5 -X POST http://127.0.0.1:3001/api/auth/login \
    -H 'content-type: application/json' -d "{\"email\":\"$email\",\"password\":\"wrong\"}"  # 401
  i=$((i + 1))
  sleep 0.3
done
say "traffic: $demos demo run(s) passed, $demo_failures failed; $i read loops"
[ "$demo_failures" = 0 ] || say "last failed demo said: $(tail -n 2 "$tmp/demo.failed.log" | tr '\n' ' ')"

# --- /metrics and the cross-check -----------------------------------------------------------------
status=0
mkdir -p "$CAPTURES"
for k in "${!PORTS[@]}"; do
  curl -fsS -m 10 "http://127.0.0.1:${PORTS[$k]}/metrics" >"$CAPTURES/${SERVICES[$k]}.txt"
done
say "cross-check: dashboards and rules against the captured /metrics ($CAPTURES)"
python3 scripts/checks/metrics_names.py --metrics "$CAPTURES"/*.txt || status=1

# One more rule evaluation (30 s) and scrape after the last request, then the picture.
sleep 35
end=$(date +%s)
say "picture: $DASHBOARD over $(date -u -d "@$start" +%H:%M)-$(date -u -d "@$end" +%H:%M) UTC -> $OUT"
mkdir -p "$(dirname "$OUT")"
python3 observability/grafana/render_snapshot.py --prometheus "$prom" --dashboard "$DASHBOARD" \
  --start "$start" --end "$end" --out "$OUT" \
  --subtitle "real data: make up + make demo loop, Prometheus $TOOLS_PROMETHEUS_DEB, $(date -u -d "@$start" '+%Y-%m-%d %H:%M')-$(date -u -d "@$end" +%H:%M) UTC" \
  --note "11=Kong is not part of make up" --note "12=Kong is not part of make up" \
  --note "13=Kong is not part of make up" || status=1
[ -f "$OUT" ] && say "picture: $OUT ($(($(stat -c %s "$OUT") / 1024)) KiB)"
say "rules and alerts during the window"
python3 observability/grafana/render_snapshot.py --prometheus "$prom" --start "$start" --end "$end" --report || status=1
exit $status
