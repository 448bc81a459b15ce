#!/usr/bin/env bash
# Operating the platform (issue 13, docs/operations.md), rendered and checked offline:
#   - charts/microservice with externalSecrets.enabled (every service) and keda.enabled
#     (notification-service), plus a Rollout variant; charts/platform-namespace per environment;
#   - Kubernetes schemas for the built-in kinds; our own JSON schemas (scripts/checks/schemas/)
#     for ScaledObject, ExternalSecret and ClusterSecretStore, through check-jsonschema;
#   - scripts/checks/operations.py: ScaledObject on the stream/consumer of docs/CONTRACTS.md,
#     ExternalSecrets = the Secrets the pods read, Pod Security `restricted` and maxUnavailable 0,
#     ResourceQuota/LimitRange sized from the services' requests, Loki/Promtail/Grafana wiring.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
# shellcheck source=SCRIPTDIR/../lib/tools.sh
source scripts/lib/tools.sh
# shellcheck source=SCRIPTDIR/../lib/check.sh
source scripts/lib/check.sh

KUBE_VERSION=1.31.0
NAMESPACE=microservices-platform
CHART=charts/microservice
NS_CHART=charts/platform-namespace
SCHEMAS=scripts/checks/schemas
SERVICES=(user-service order-service notification-service)
ENVS=(dev staging prod)

tools_helm && tools_pip kubernetes-validate==1.37.0 pyyaml==6.0.3 check-jsonschema==0.33.3 yamllint==1.38.0 || exit 1
py=$TOOLS_DIR/venv/bin/python

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/render" "$work/kinds"

check "yamllint: $NS_CHART values" yamllint -s -c charts/.yamllint.yml "$NS_CHART"
for env in "${ENVS[@]}"; do
  check "helm lint --strict platform-namespace ($env)" \
    helm lint --strict --quiet --kube-version "$KUBE_VERSION" "$NS_CHART" -n "$NAMESPACE" -f "$NS_CHART/env/$env.yaml" \
    --set secretStore.enabled=true
  check "helm template platform-namespace ($env, with the ClusterSecretStore)" to_file "$work/render/$env.platform-namespace.yaml" \
    helm template platform-namespace "$NS_CHART" -n "$NAMESPACE" --kube-version "$KUBE_VERSION" \
    -f "$NS_CHART/env/$env.yaml" --set secretStore.enabled=true
  for svc in "${SERVICES[@]}"; do
    opts=externalSecrets.enabled=true
    [ "$svc" = notification-service ] && opts+=,keda.enabled=true
    check "helm template $svc ($env, $opts)" to_file "$work/render/$env.$svc.yaml" \
      helm template "$svc" "$CHART" -n "$NAMESPACE" --kube-version "$KUBE_VERSION" \
      -f "$CHART/services/$svc.yaml" -f "$CHART/env/$env/$svc.yaml" --set "$opts"
  done
done
check "helm template order-service (prod, rollout + KEDA + external secrets)" to_file "$work/render/prod.order-service-rollout.yaml" \
  helm template order-service "$CHART" -n "$NAMESPACE" --kube-version "$KUBE_VERSION" \
  -f "$CHART/services/order-service.yaml" -f "$CHART/env/prod/order-service.yaml" \
  --set rollout.enabled=true,externalSecrets.enabled=true

repo=$PWD
cd "$work/render" || exit 1
shopt -s nullglob
renders=(*.yaml)
check_k8s_schemas "$KUBE_VERSION" "${renders[@]}"
cd "$repo" || exit 1

# Custom resources no package models: one file per document, validated against our schemas.
"$py" - "$work/kinds" "$work"/render/*.yaml <<'PY'
import os, sys, yaml
out = sys.argv[1]
for path in sys.argv[2:]:
    with open(path) as f:
        for i, d in enumerate(yaml.safe_load_all(f)):
            if isinstance(d, dict) and d.get("kind") in ("ScaledObject", "ExternalSecret", "ClusterSecretStore"):
                name = f"{d['kind']}.{os.path.basename(path)[:-5]}.{d['metadata']['name']}.yaml"
                with open(os.path.join(out, name), "w") as g:
                    yaml.safe_dump(d, g)
PY
for pair in ScaledObject:keda-scaledobject ExternalSecret:external-secret ClusterSecretStore:cluster-secret-store; do
  kind=${pair%%:*} schema=$SCHEMAS/${pair#*:}.json
  files=("$work/kinds/$kind".*.yaml)
  if [ ${#files[@]} -eq 0 ]; then
    not_ok "$kind: schema $schema" "nothing rendered"
  else
    check "$kind: ${#files[@]} rendered, valid against $schema" check-jsonschema --schemafile "$schema" "${files[@]}"
  fi
done
# The schemas must reject a misspelled field (they are strict where the CRDs are not).
sample=("$work"/kinds/ScaledObject.*.yaml)
if [ ${#sample[@]} -gt 0 ]; then
  sed 's/lagThreshold:/lagTreshold:/; s/cooldownPeriod:/cooldownPeriode:/' "${sample[0]}" >"$work/bad-scaledobject.yaml"
  if check-jsonschema --schemafile "$SCHEMAS/keda-scaledobject.json" "$work/bad-scaledobject.yaml" >/dev/null 2>&1; then
    not_ok "ScaledObject schema rejects misspelled fields (self-test)"
  else
    ok "ScaledObject schema rejects misspelled fields (self-test)"
  fi
fi

for env in "${ENVS[@]}"; do
  "$py" scripts/checks/operations.py keda "$work/render/$env.notification-service.yaml" || CHECKS_FAILED=$((CHECKS_FAILED + 1))
done
"$py" scripts/checks/operations.py secrets "$work"/render/*-service.yaml "$work"/render/*-rollout.yaml || CHECKS_FAILED=$((CHECKS_FAILED + 1))
"$py" scripts/checks/operations.py restricted "${renders[@]/#/$work/render/}" || CHECKS_FAILED=$((CHECKS_FAILED + 1))
"$py" scripts/checks/operations.py namespace || CHECKS_FAILED=$((CHECKS_FAILED + 1))
"$py" scripts/checks/operations.py logs || CHECKS_FAILED=$((CHECKS_FAILED + 1))
checks_done
