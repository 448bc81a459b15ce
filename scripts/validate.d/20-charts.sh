#!/usr/bin/env bash
# Helm chart charts/microservice: lint and render for every service x environment (plus a second
# track side by side), then check the renders against the Kubernetes schemas, the CRD models
# typed through TypeScript, and the services' contract (scripts/checks/charts_contract.py).
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
ENVS=(dev staging prod)
# A second release per environment, installed beside the primary one (env:track).
SECOND_TRACKS=(staging:green prod:canary)

tools_helm && tools_pip kubernetes-validate==1.37.0 yamllint==1.38.0 &&
  tools_npm typescript@5.9.3 yaml@2.9.1 kubernetes-models@5.1.0 \
    @kubernetes-models/prometheus-operator@6.0.0 || exit 1

renders=$(mktemp -d)
trap 'rm -rf "$renders"' EXIT

check "yamllint: $CHART values" yamllint -s -c charts/.yamllint.yml "$CHART"

# render ENV SERVICE TRACK [helm args...]: helm template into $renders/ENV.SERVICE.TRACK.yaml
render() {
  local env=$1 svc=$2 track=$3
  shift 3
  check "helm template $svc ($env, $track)" to_file "$renders/$env.$svc.$track.yaml" \
    helm template "$svc-$track" "$CHART" -n "$NAMESPACE" --kube-version "$KUBE_VERSION" \
    -f "$CHART/services/$svc.yaml" -f "$CHART/env/$env/$svc.yaml" "$@"
}

# shellcheck disable=SC2329 # called through check
fails() { ! "$@" >/dev/null 2>&1; }

for env in "${ENVS[@]}"; do
  for svc in "${SERVICES[@]}"; do
    values=(-f "$CHART/services/$svc.yaml" -f "$CHART/env/$env/$svc.yaml")
    check "helm lint --strict $svc ($env)" \
      helm lint --strict --quiet --kube-version "$KUBE_VERSION" "$CHART" -n "$NAMESPACE" "${values[@]}"
    track=$(sed -n 's/^track: *//p' "$CHART/env/$env/$svc.yaml")
    render "$env" "$svc" "${track:-stable}"
  done
done
# Extra releases beside the primary one (Argo CD adds them as <service>-<track>), each with one
# more values file env/<env>/<service>-<track>.yaml; with none committed, a sample second track.
for env in "${ENVS[@]}"; do
  for svc in "${SERVICES[@]}"; do
    for extra in "$CHART/env/$env/$svc"-*.yaml; do
      [ -f "$extra" ] || continue
      track=${extra##*/"$svc"-}
      track=${track%.yaml}
      check "helm lint --strict $svc-$track ($env)" helm lint --strict --quiet --kube-version "$KUBE_VERSION" \
        "$CHART" -n "$NAMESPACE" -f "$CHART/services/$svc.yaml" -f "$CHART/env/$env/$svc.yaml" -f "$extra"
      render "$env" "$svc" "$track" -f "$extra"
    done
  done
done
for pair in "${SECOND_TRACKS[@]}"; do
  env=${pair%%:*} track=${pair#*:}
  for svc in "${SERVICES[@]}"; do
    [ -f "$renders/$env.$svc.$track.yaml" ] ||
      render "$env" "$svc" "$track" --set "track=$track,primary=false,image.tag=0.2.0-rc.1"
  done
done

# The schema must reject a misspelled key (guards against additionalProperties being dropped).
check "values.schema.json rejects unknown keys" \
  fails helm lint --strict "$CHART" -f "$CHART/services/user-service.yaml" --set replicaz=2

repo=$PWD
cd "$renders" || exit 1
shopt -s nullglob
files=(*.yaml)
if [ ${#files[@]} -eq 0 ]; then
  not_ok "renders" "helm template rendered nothing"
else
  check_k8s_schemas "$KUBE_VERSION" "${files[@]}"
  node "$repo/scripts/checks/charts_crd_types.mjs" "${files[@]}" || CHECKS_FAILED=$((CHECKS_FAILED + 1))
fi
cd "$repo" || exit 1
"$TOOLS_DIR/venv/bin/python" scripts/checks/charts_contract.py renders "$renders" || CHECKS_FAILED=$((CHECKS_FAILED + 1))
checks_done
