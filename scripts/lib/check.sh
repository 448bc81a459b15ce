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

# to_file FILE CMD [ARG...]: CMD's stdout into FILE, and no FILE when CMD fails (so a failed
# render is reported once, by `check "..." to_file ...`, not again by every later check).
to_file() {
  local file=$1
  shift
  "$@" >"$file" || { rm -f "$file"; return 1; }
}

# check_k8s_schemas KUBE_VERSION FILE...: one check per file against the core Kubernetes
# schemas (needs `tools_pip kubernetes-validate==1.37.0`). Unknown fields fail (--strict); so does
# "couldn't find schema" for a built-in group (a removed or misspelled apiVersion/kind), which
# kubernetes-validate itself only warns about. Custom resources are left to the CRD checks.
check_k8s_schemas() {
  local kube=$1 out file reasons
  shift
  out=$(kubernetes-validate -k "$kube" --strict "$@" 2>&1)
  for file in "$@"; do
    reasons=$(awk -v f="$file" '
      index($0, " " f " ") == 0 { next }
      /^ERROR/ { print; next }
      /^WARN/ && /[Cc]ouldn.t find schema/ {
        match($0, /api version [^ ]+/); av = substr($0, RSTART + 12, RLENGTH - 12)
        group = (av ~ /\//) ? av : ""; sub(/\/.*/, "", group)
        if (group == "" || group !~ /\./ || group ~ /\.k8s\.io$/) print
      }' <<<"$out")
    if [ -n "$reasons" ]; then
      not_ok "kubernetes schema ($kube): ${file#"$PWD"/}" "$reasons"
    # A here-string, not `printf | grep -q`: grep -q exits at the first match, and under
    # pipefail the SIGPIPE that printf then gets (on output over a pipe's buffer) read as "no match".
    elif grep -qF " $file " <<<"$out"; then
      ok "kubernetes schema ($kube): ${file#"$PWD"/}"
    else
      not_ok "kubernetes schema ($kube): ${file#"$PWD"/}" "kubernetes-validate said nothing about it:" "$out"
    fi
  done
}
