# shellcheck shell=bash
# Reporting helpers for scripts/validate.d/*.sh: one line per check, "ok - WHAT" or
# "not ok - WHAT" followed by the reason indented by four spaces.
#   source "$(dirname "$0")/../lib/check.sh"
#   check "helm lint user-service dev" helm lint --strict ...
#   checks_done            # last line of the script: exit status 1 if any check failed

CHECKS_FAILED=0

ok() { echo "ok - $*"; }

# not_ok WHAT [REASON...]
not_ok() {
  local what=$1
  shift
  echo "not ok - $what"
  if [ $# -gt 0 ]; then printf '%s\n' "$@" | sed -e 's/^/    /' | head -n 60; fi
  CHECKS_FAILED=$((CHECKS_FAILED + 1))
}

# check WHAT CMD [ARG...]: ok when CMD exits 0, else not ok with CMD's output as the reason.
check() {
  local what=$1 out
  shift
  if out=$("$@" 2>&1); then ok "$what"; else not_ok "$what" "${out:-exit status $?}"; fi
}

checks_done() { exit $((CHECKS_FAILED > 0)); }
