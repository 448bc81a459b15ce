#!/usr/bin/env bash
# Istio (the mesh chart in istio/): helm lint and render for every environment, for the canary
# weight steps 90/10, 50/50, 0/100, for blue-green with either colour active, and with fault
# injection; renders and istio/examples typed against @kubernetes-models/istio through tsc
# (misspelled fields fail); then cross-checks (scripts/checks/istio_mesh.py) against the
# rendered charts/microservice: destinations, subsets and pod labels, weights, retries,
# mTLS, authorization edges and principals, JWT key = Kong's, tracing.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
# shellcheck source=SCRIPTDIR/../lib/tools.sh
source scripts/lib/tools.sh
# shellcheck source=SCRIPTDIR/../lib/check.sh
source scripts/lib/check.sh

KUBE_VERSION=1.31.0
NAMESPACE=microservices-platform
CHART=charts/microservice
SERVICES=(user-service order-service notification-service)
TRACKS=(stable canary blue green)

tools_helm && tools_pip pyyaml==6.0.3 yamllint==1.38.0 &&
  tools_npm typescript@5.9.3 yaml@2.9.1 @kubernetes-models/istio@3.0.1 || exit 1
py=$TOOLS_DIR/venv/bin/python

renders=$(mktemp -d)
trap 'rm -rf "$renders"' EXIT
mkdir -p "$renders/mesh" "$renders/chart"

# shellcheck disable=SC2329 # called through check
to_file() { # FILE CMD...: CMD's stdout into FILE
  local file=$1
  shift
  "$@" >"$file"
}
# shellcheck disable=SC2329 # called through check
fails() { ! "$@" >/dev/null 2>&1; }
# every_service KEY=VALUE: --set services.<svc>.KEY=VALUE for each service
every_service() {
  local svc
  for svc in "${SERVICES[@]}"; do printf -- '--set\nservices.%s.%s\n' "$svc" "$1"; done
}
# mesh NAME [helm args...]: render istio/ into $renders/mesh/NAME.yaml
mesh() {
  local name=$1
  shift
  check "helm template istio ($name)" to_file "$renders/mesh/$name.yaml" \
    helm template mesh istio -n "$NAMESPACE" --kube-version "$KUBE_VERSION" "$@"
}

check "yamllint: istio values and examples" yamllint -s \
  -d '{extends: default, rules: {line-length: {max: 120}, document-start: disable, comments: {min-spaces-from-content: 1}}}' \
  istio/values.yaml istio/Chart.yaml istio/env istio/examples
for env in dev staging prod; do
  check "helm lint --strict istio ($env)" \
    helm lint --strict --quiet --kube-version "$KUBE_VERSION" istio -f "istio/env/$env.yaml"
  mesh "$env" -f "istio/env/$env.yaml"
done
for weight in 10 50 100; do
  mapfile -t args < <(every_service strategy=canary; every_service "canary.weight=$weight")
  mesh "canary-$weight" "${args[@]}"
done
for colour in blue green; do
  mapfile -t args < <(every_service strategy=blueGreen; every_service "blueGreen.active=$colour")
  mesh "bluegreen-$colour" "${args[@]}"
done
mesh "fault-order-service" --set faultInjection.enabled=true --set faultInjection.abort.percentage=10

check "istio values.schema.json rejects a misspelled key" \
  fails helm template istio --set defaults.retires.attempts=1
check "istio values.schema.json rejects canary weight 120" \
  fails helm template istio --set services.order-service.canary.weight=120
check "istio values.schema.json rejects strategy canery" \
  fails helm template istio --set services.order-service.strategy=canery

# charts/microservice (another issue's chart): pods, Services and ServiceAccounts per track.
chart_args=()
if [ -f "$CHART/Chart.yaml" ]; then
  for svc in "${SERVICES[@]}"; do
    for track in "${TRACKS[@]}"; do
      check "helm template $CHART $svc ($track) for the mesh cross-check" \
        to_file "$renders/chart/$svc-$track.yaml" \
        helm template "$svc-$track" "$CHART" -n "$NAMESPACE" --kube-version "$KUBE_VERSION" \
        -f "$CHART/services/$svc.yaml" -f "$CHART/env/dev/$svc.yaml" --set "track=$track"
    done
  done
  chart_args=(--chart-renders "$renders/chart")
fi

repo=$PWD
(cd "$renders/mesh" && node "$repo/scripts/checks/charts_crd_types.mjs" ./*.yaml) ||
  CHECKS_FAILED=$((CHECKS_FAILED + 1))
node scripts/checks/charts_crd_types.mjs istio/examples/*.yaml || CHECKS_FAILED=$((CHECKS_FAILED + 1))
"$py" scripts/checks/istio_mesh.py --renders "$renders/mesh" "${chart_args[@]}" ||
  CHECKS_FAILED=$((CHECKS_FAILED + 1))
checks_done
