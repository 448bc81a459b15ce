#!/usr/bin/env bash
# Observability artifacts (observability/): Prometheus configs and rules, promtool unit tests,
# Grafana dashboards, the metric-name cross-check against the services' /metrics, the
# observability chart (PrometheusRules + dashboard ConfigMaps + collector config) rendered,
# typed and validated, the collector config, yamllint. One line per check.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=SCRIPTDIR/../lib/tools.sh
source "$here/../lib/tools.sh"
# shellcheck source=SCRIPTDIR/../lib/check.sh
source "$here/../lib/check.sh"

obs=$repo/observability
checks=$repo/scripts/checks
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Not in a subshell: the installers put the tools on PATH and set NODE_PATH.
if ! { tools_promtool && tools_helm && tools_pip yamllint==1.38.0 &&
  tools_npm typescript@5.9.3 @kubernetes-models/prometheus-operator@6.0.0 kubernetes-models@5.1.0; } 2>"$tmp/install.err"; then
  not_ok "observability: install promtool, helm, yamllint, typescript and models" "$(cat "$tmp/install.err")"
  checks_done
fi
# The venv's python3 (tools_pip put it first on PATH) has PyYAML.
py=python3

# --- Prometheus ---------------------------------------------------------------------------------
check "observability: promtool check rules (rules/*.yml)" promtool check rules "$obs"/prometheus/rules/*.yml
check "observability: promtool test rules (tests/*.yml)" promtool test rules "$obs"/prometheus/tests/*.yml
check "observability: every alert fires and stays quiet in a test, every recording rule is tested" \
  "$py" "$checks/observability_consistency.py" alert-coverage
for cfg in "$obs"/prometheus/prometheus*.yml; do
  check "observability: promtool check config $(basename "$cfg")" promtool check config "$cfg"
done

# --- Grafana ------------------------------------------------------------------------------------
check "observability: dashboards are valid JSON with unique uids and panel ids, defined variables" \
  "$py" "$checks/dashboards.py"

# --- Metric names: dashboards, rules and AnalysisTemplates against the services' /metrics ------
# METRICS_CAPTURES (a glob, e.g. captured by the end-to-end tests from the running services)
# replaces the fixtures written from docs/CONTRACTS.md.
# shellcheck disable=SC2206 # the glob is meant to expand
captures=(${METRICS_CAPTURES:-$checks/fixtures/metrics/*.txt})
check "observability: metric and label names exist in ${#captures[@]} /metrics exposition(s)" \
  "$py" "$checks/metrics_names.py" --metrics "${captures[@]}"
# The cross-check must itself reject a misspelled metric and an absent label.
cat >"$tmp/bad-dashboard.json" <<'EOF'
{"uid": "bad", "panels": [{"id": 1, "targets": [
  {"refId": "A", "expr": "sum(rate(http_request_total[5m]))"},
  {"refId": "B", "expr": "sum by (channel) (rate(http_requests_total[5m]))"}]}]}
EOF
if out=$("$py" "$checks/metrics_names.py" --metrics "${captures[@]}" --dashboards "$tmp/bad-dashboard.json" 2>&1) ||
  ! grep -q 'unknown metric "http_request_total"' <<<"$out" || ! grep -q 'label "channel"' <<<"$out"; then
  not_ok "observability: metric-name cross-check rejects a wrong metric and a wrong label (self-test)" "$out"
else
  ok "observability: metric-name cross-check rejects a wrong metric and a wrong label (self-test)"
fi

# --- Kubernetes: the observability chart --------------------------------------------------------
# Helm logs one INFO line per symlink under chart/files (expected: see observability/README.md).
# shellcheck disable=SC2329 # called through check
helm_quiet() {
  local rc
  helm "$@" 2>&1 | grep -v 'level=INFO msg="found symbolic link in path'
  rc=${PIPESTATUS[0]}
  return "$rc"
}
check "observability: helm lint --strict observability/chart" helm_quiet lint --strict "$obs/chart"
if helm template platform-observability "$obs/chart" --namespace observability >"$tmp/rendered.yaml" 2>"$tmp/helm.err"; then
  ok "observability: helm template observability/chart"
  check "observability: rendered PrometheusRules and dashboard ConfigMaps equal their source files" \
    "$py" "$checks/observability_consistency.py" chart-sources "$tmp/rendered.yaml"
  check "observability: rendered chart typed (tsc) and validated (@kubernetes-models)" \
    "$py" "$checks/k8s_typecheck.py" "$tmp/rendered.yaml"
else
  not_ok "observability: helm template observability/chart" "$(grep -v 'found symbolic link in path' "$tmp/helm.err")"
fi

# --- OpenTelemetry Collector --------------------------------------------------------------------
check "observability: otel collector config is consistent (components, ports, sampling, Jaeger)" \
  "$py" "$checks/otel_config.py"

# --- YAML style ---------------------------------------------------------------------------------
yamllint_config='{extends: default, ignore: [observability/chart/templates/], rules: {line-length: {max: 160}, document-start: disable, truthy: {check-keys: false}, comments: {min-spaces-from-content: 1}}}'
# shellcheck disable=SC2329 # called through check
yamllint_observability() { (cd "$repo" && yamllint -s -d "$yamllint_config" observability/); }
check "observability: yamllint observability/" yamllint_observability

checks_done
