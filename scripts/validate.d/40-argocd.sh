#!/usr/bin/env bash
# Argo CD (argocd/): render the app of apps from argocd/root.yaml as Argo CD would, then check
#   - every Argo CD resource against the CRD schemas and typed through TypeScript
#     (scripts/checks/argocd_schema.mjs: misspelled fields fail);
#   - paths and values files exist, sources and destinations allowed by the AppProject, sync
#     waves infrastructure < services < routing, sync policy, whitelisted kinds
#     (scripts/checks/argocd_lint.py);
#   - yamllint on the hand-written YAML.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
# shellcheck source=../lib/tools.sh
source scripts/lib/tools.sh
# shellcheck source=../lib/check.sh
source scripts/lib/check.sh

tools_helm && tools_pip pyyaml==6.0.3 yamllint==1.38.0 &&
  tools_npm typescript@5.9.3 @kubernetes-models/argo-cd@4.0.0 || exit 1

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

yamllint_config='{extends: default, rules: {line-length: {max: 130}, document-start: disable, comments: {min-spaces-from-content: 1}}}'
check "yamllint: argocd/ (root.yaml, chart values)" \
  yamllint -s -d "$yamllint_config" argocd/root.yaml argocd/platform/values.yaml argocd/platform/env

"$TOOLS_DIR/venv/bin/python" scripts/checks/argocd_lint.py --dump "$work/argocd.json" || CHECKS_FAILED=$((CHECKS_FAILED + 1))
if [ -s "$work/argocd.json" ]; then
  node scripts/checks/argocd_schema.mjs "$work/argocd.json" || CHECKS_FAILED=$((CHECKS_FAILED + 1))
fi
checks_done
