#!/usr/bin/env bash
# The whole test suite: formatting and lints, every crate's tests against real PostgreSQL,
# NATS JetStream, SMTP and OTLP servers, then the deployment artifacts' validation.
# Starts PostgreSQL and NATS first when they are not running (installing them if needed).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export TEST_POSTGRES_URL=${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:$PG_PORT/postgres}
export TEST_NATS_URL=${TEST_NATS_URL:-nats://127.0.0.1:$NATS_PORT}

ensure_postgres
ensure_nats "$DEPS_DIR/nats"
export NATS_SERVER_BIN=${NATS_SERVER_BIN:-$(nats_binary)}

# Databases left by earlier runs (each test makes its own).
psql "$TEST_POSTGRES_URL" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'msp\_test\_%'" 2>/dev/null |
  while read -r db; do psql "$TEST_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true; done

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo deny (licences, bans, sources; advisories need the network and run in GitHub Actions)"
command -v cargo-deny >/dev/null || cargo install --locked --quiet cargo-deny@0.20.2
# cargo-deny reads every crate of the lock file, other platforms' too, which a build never
# downloads: fetch them (a no-op once cached; without a network the cache has to do).
cargo fetch --locked --quiet || echo "cargo fetch failed (offline?): checking with what is cached" >&2
cargo deny --offline --log-level error check licenses bans sources
echo "== cargo test"
# The end-to-end tests keep the services' real OpenAPI documents and /metrics here, so the
# deployment checks below hold Kong's routes and the dashboards against what really runs.
E2E_CAPTURES_DIR=$(mktemp -d)
export E2E_CAPTURES_DIR
trap 'rm -rf "$E2E_CAPTURES_DIR"' EXIT
cargo test --workspace --locked
if [ -f "$E2E_CAPTURES_DIR/openapi/user-service.json" ]; then
  export OPENAPI_DIR=$E2E_CAPTURES_DIR/openapi METRICS_CAPTURES="$E2E_CAPTURES_DIR/metrics/*.txt"
fi
echo "== deployment artifacts"
scripts/validate.sh
