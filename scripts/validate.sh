#!/usr/bin/env bash
# Validates the deployment artifacts offline: runs every scripts/validate.d/*.sh in order.
# Each prints one line per check ("ok - ..." / "not ok - ..." with the reason indented below).
# Ends with exactly one line "N passed, N failed"; exits non-zero if any check failed or any
# script exited non-zero. Tools are installed once into ${TOOLS_DIR:-.tools} (scripts/lib/tools.sh).
#   scripts/validate.sh              # everything
#   scripts/validate.sh 20 30        # only the scripts whose names start with 20 or 30
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
passed=0 failed=0 status=0
started=$SECONDS
out=$(mktemp)
trap 'rm -f "$out"' EXIT

for script in "$here"/validate.d/*.sh; do
  [ -f "$script" ] || continue
  name=$(basename "$script")
  if [ $# -gt 0 ]; then
    wanted=0
    for prefix in "$@"; do case $name in "$prefix"*) wanted=1 ;; esac; done
    [ $wanted -eq 1 ] || continue
  fi
  echo "# $name"
  t0=$SECONDS
  bash "$script" </dev/null 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  p=$(grep -c '^ok - ' "$out")
  f=$(grep -c '^not ok - ' "$out")
  if [ "$rc" -ne 0 ]; then
    status=1
    if [ "$f" -eq 0 ]; then
      echo "not ok - $name exited with status $rc"
      f=1
    fi
  fi
  passed=$((passed + p))
  failed=$((failed + f))
  echo "# $name: $p passed, $f failed in $((SECONDS - t0))s"
done

echo "# validation took $((SECONDS - started))s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$status" -eq 0 ]
