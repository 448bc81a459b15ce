#!/usr/bin/env bash
# Property-based API testing of one running service against its own /openapi.json with
# schemathesis (pinned, installed on demand into .tools/venv by scripts/lib/tools.sh).
#
#   SCHEMATHESIS_TOKEN=<admin bearer token> scripts/schemathesis.sh http://127.0.0.1:3002
#
# Checks: no 5xx, status codes, content types and bodies as documented. Bounded: at most
# SCHEMATHESIS_MAX_EXAMPLES cases per operation and phase (default 5), SCHEMATHESIS_MAX_TIME
# seconds in all (default 15), fixed seed so a run is reproducible. Prints
# SCHEMATHESIS_CASES=<test cases sent> and exits non-zero on any failure.
# e2e/tests/hostile.rs runs it against the three live services.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/tools.sh

base=${1:?usage: scripts/schemathesis.sh BASE_URL}
base=${base%/}
tools_pip schemathesis==4.32.5
st=$TOOLS_DIR/venv/bin/st

report=$(mktemp -d)
trap 'rm -rf "$report"' EXIT
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
phases=examples,coverage,fuzzing
args=(
  run "$base/openapi.json" --url "$base"
  --checks "$checks"
  --phases "$phases"
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-5}"
  --max-time "${SCHEMATHESIS_MAX_TIME:-15}"
  --seed "${SCHEMATHESIS_SEED:-20261122}"
  --workers 1
  --request-timeout 10
  --suppress-health-check all
  --no-color
  --report ndjson --report-ndjson-path "$report/events.ndjson"
)
if [ -n "${SCHEMATHESIS_TOKEN:-}" ]; then
  args+=(-H "Authorization: Bearer $SCHEMATHESIS_TOKEN")
fi
status=0
# Belt and braces around --max-time: a wedged run cannot hold the test suite.
timeout --kill-after=10 "$(( ${SCHEMATHESIS_MAX_TIME:-15} + 30 ))" "$st" "${args[@]}" || status=$?
"$TOOLS_DIR/venv/bin/python" - "$report/events.ndjson" <<'PY'
import json, sys
cases = 0
try:
    with open(sys.argv[1]) as events:
        for line in events:
            event = json.loads(line)
            for kind, body in event.items():
                if kind == "ScenarioFinished":
                    cases += len((body.get("recorder") or {}).get("cases") or {})
except FileNotFoundError:
    pass
print(f"SCHEMATHESIS_CASES={cases}")
PY
exit "$status"
