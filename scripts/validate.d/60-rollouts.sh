#!/usr/bin/env bash
# Progressive delivery (issue 12, docs/progressive-delivery.md): charts/microservice with
# rollout.enabled, for every service x environment x strategy (canary, blueGreen):
#   - rendered Rollout, AnalysisTemplates, preview Service: Kubernetes schemas, and the Argo
#     Rollouts models typed through TypeScript (scripts/checks/charts_crd_types.mjs);
#   - the Rollout's VirtualService, routes, DestinationRule, subsets and Services exist in the
#     istio chart's render with the strategy the Rollout needs (scripts/checks/rollouts.py);
#   - chart, Argo CD and istio environment values agree; Argo CD ignores what the controller owns;
#   - every AnalysisTemplate query parses (promtool) and names only exported metrics and labels
#     (scripts/checks/metrics_names.py); a promtool unit test shows the success-rate and latency
#     verdicts on a healthy and a failing canary (charts/microservice/tests/analysis_test.yml).
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

tools_helm && tools_promtool && tools_pip kubernetes-validate==1.37.0 pyyaml==6.0.3 yamllint==1.38.0 &&
  tools_npm typescript@5.9.3 yaml@2.9.1 kubernetes-models@5.1.0 @kubernetes-models/prometheus-operator@6.0.0 \
    @kubernetes-models/argo-rollouts@2.0.0 @kubernetes-models/istio@3.0.1 || exit 1
py=$TOOLS_DIR/venv/bin/python

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/chart" "$work/istio" "$work/analysis"

# The istio chart per environment with every service on the strategy a Rollout needs:
# canary -> strategy canary (weighted stable/canary routes), blueGreen -> strategy stable.
for env in "${ENVS[@]}"; do
  for pair in canary:canary blueGreen:stable; do
    strategy=${pair%%:*} mesh=${pair#*:}
    sets=()
    for svc in "${SERVICES[@]}"; do sets+=(--set "services.$svc.strategy=$mesh"); done
    check "helm template istio ($env, every service $mesh)" to_file "$work/istio/$env.$strategy.yaml" \
      helm template istio-routing istio -n "$NAMESPACE" --kube-version "$KUBE_VERSION" -f "istio/env/$env.yaml" "${sets[@]}"
  done
done

for env in "${ENVS[@]}"; do
  for svc in "${SERVICES[@]}"; do
    for strategy in canary blueGreen; do
      check "helm template $svc with rollout ($env, $strategy)" to_file "$work/chart/$env.$svc.$strategy.yaml" \
        helm template "$svc" "$CHART" -n "$NAMESPACE" --kube-version "$KUBE_VERSION" \
        -f "$CHART/services/$svc.yaml" -f "$CHART/env/$env/$svc.yaml" \
        --set "rollout.enabled=true,rollout.strategy=$strategy"
    done
  done
done

repo=$PWD
cd "$work/chart" || exit 1
shopt -s nullglob
renders=(*.yaml)
if [ ${#renders[@]} -eq 0 ]; then
  not_ok "rollout renders" "nothing rendered"
  checks_done
fi
check_k8s_schemas "$KUBE_VERSION" "${renders[@]}"
node "$repo/scripts/checks/charts_crd_types.mjs" "${renders[@]}" || CHECKS_FAILED=$((CHECKS_FAILED + 1))
cd "$work/istio" && node "$repo/scripts/checks/charts_crd_types.mjs" ./*.yaml || CHECKS_FAILED=$((CHECKS_FAILED + 1))
cd "$repo" || exit 1

for file in "${renders[@]}"; do
  env=${file%%.*} strategy=${file%.yaml} strategy=${strategy##*.}
  "$py" scripts/checks/rollouts.py routing "$work/chart/$file" "$work/istio/$env.$strategy.yaml" ||
    CHECKS_FAILED=$((CHECKS_FAILED + 1))
done
"$py" scripts/checks/rollouts.py envs || CHECKS_FAILED=$((CHECKS_FAILED + 1))

# Argo CD: one environment rendered with a service switched to Rollouts.
if helm template platform-prod argocd/platform -f argocd/platform/env/prod.yaml \
  --set env=prod,repoURL=https://example.invalid/repo.git --set services.order-service.rollout=true \
  >"$work/argocd.yaml" 2>"$work/argocd.err"; then
  "$py" scripts/checks/rollouts.py argocd "$work/argocd.yaml" order-service || CHECKS_FAILED=$((CHECKS_FAILED + 1))
else
  not_ok "helm template argocd/platform (prod, order-service rollout)" "$(cat "$work/argocd.err")"
fi

# PromQL: every query of every AnalysisTemplate, as recording rules for promtool.
n=0
for file in "${renders[@]}"; do
  n=$((n + 1))
  "$py" scripts/checks/rollouts.py rules "$work/chart/$file" "$work/analysis/$n.rules.yml" >/dev/null ||
    not_ok "AnalysisTemplate queries of $file as rules" "see rollouts.py rules"
done
check "promtool check rules: every AnalysisTemplate query and successCondition parses" \
  promtool check rules "$work"/analysis/*.rules.yml
check "metric and label names of every AnalysisTemplate exist in the services' /metrics (or Istio's)" \
  "$py" scripts/checks/metrics_names.py --metrics scripts/checks/fixtures/metrics/*.txt \
  --dashboards --rules --charts "$work/chart"

# Unit test: the real order-service (prod) queries against a healthy and a failing canary.
mkdir -p "$work/test"
cp "$CHART/tests/analysis_test.yml" "$work/test/"
if "$py" scripts/checks/rollouts.py rules "$work/chart/prod.order-service.canary.yaml" "$work/test/analysis.rules.yml" >/dev/null; then
  check "promtool test rules: success rate and p99 verdicts, healthy vs failing canary ($CHART/tests)" \
    promtool test rules "$work/test/analysis_test.yml"
else
  not_ok "promtool test rules ($CHART/tests)" "cannot write the rules of prod.order-service.canary.yaml"
fi

checks_done
