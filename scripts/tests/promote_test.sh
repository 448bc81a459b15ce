#!/usr/bin/env bash
# Tests scripts/promote.sh on a temporary copy of the repository's real values files:
# each promotion must change exactly the expected lines (shown as a diff), keep comments,
# and fail clearly, naming the file, when a file or key is missing. After a canary is started
# the Argo CD app of apps must still check out (the new release's values files exist).
# Ends with "N passed, N failed"; exit status 1 on any failure.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo" || exit 1
# shellcheck source=../lib/tools.sh
source scripts/lib/tools.sh
tools_helm && tools_pip pyyaml==6.0.3 ruamel.yaml==0.18.6 || exit 1

passed=0 failed=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
copy=$work/repo orig=$work/orig

pass() { passed=$((passed + 1)); echo "ok - $1"; }
fail() {
  failed=$((failed + 1))
  echo "not ok - $1"
  shift
  [ $# -eq 0 ] || printf '    %s\n' "$@"
}

# The files promotions edit, plus what the Argo CD check reads.
for d in argocd charts istio kong; do
  [ -d "$d" ] && mkdir -p "$copy" && cp -r "$d" "$copy/"
done
mkdir -p "$copy/istio/env"
for env in dev staging prod; do
  # the Istio chart's env files, or a stand-in while they do not exist yet
  [ -f "$copy/istio/env/$env.yaml" ] || printf '# %s routing (test stand-in)\nservices: {}\n' "$env" >"$copy/istio/env/$env.yaml"
done
cp -r "$copy" "$orig"

promote() { "$repo/scripts/promote.sh" --root "$copy" "$@"; }

# changed FILE: the -/+ lines of FILE against the original, without diff headers
changed() { diff -U0 "$orig/$1" "$copy/$1" | grep -E '^[-+]' | grep -vE '^(---|\+\+\+) '; }
# files_changed: the files that differ from the original (added ones included)
files_changed() { diff -rq "$orig" "$copy" | sed -E "s#^Files $orig/([^ ]+) and .*#\1#; s#^Only in $copy/?([^:]*): (.*)#\1/\2#; s#^/##" | sort; }
sync_orig() { rm -rf "$orig" && cp -r "$copy" "$orig"; }

# expect WHAT ACTUAL EXPECTED
expect() {
  if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "expected:" "$3" "got:" "$2"; fi
}

svc_file=charts/microservice/env/dev/user-service.yaml

# 1. image tag of the primary release: one line, quotes kept
out=$(promote image dev user-service sha-0123abc 2>&1) || fail "image dev user-service" "$out"
echo "$out"
expect "image: only $svc_file changed" "$(files_changed)" "$svc_file"
expect "image: exactly the tag line changed, quoted" "$(changed "$svc_file" | grep '^+')" '+  tag: "sha-0123abc"'
expect "image: comments kept" "$(grep -c '#' "$copy/$svc_file")" "$(grep -c '#' "$orig/$svc_file")"
changed "$svc_file"
sync_orig

# 2. start a canary: new release values + the track listed for Argo CD
out=$(promote track-add staging order-service canary 1.3.0-rc.1 2>&1) || fail "track-add" "$out"
echo "$out"
expect "track-add: the canary values file and the Argo CD env file" "$(files_changed)" \
  "$(printf '%s\n' argocd/platform/env/staging.yaml charts/microservice/env/staging/order-service-canary.yaml | sort)"
expect "track-add: tracks: [canary]" "$(changed argocd/platform/env/staging.yaml)" \
  "$(printf '%s\n' '-  order-service:' '-    tracks: []' '+  order-service:' '+    tracks: [canary]' | grep -v 'order-service:$')"
expect "track-add: release values" "$(grep -v '^#' "$copy/charts/microservice/env/staging/order-service-canary.yaml")" \
  "$(printf '%s\n' 'track: canary' 'primary: false' 'image:' '  tag: "1.3.0-rc.1"')"
out=$(promote image staging order-service 1.3.0 --track canary 2>&1) || fail "image --track canary" "$out"
expect "image --track canary: the canary file only" "$(files_changed)" \
  "$(printf '%s\n' argocd/platform/env/staging.yaml charts/microservice/env/staging/order-service-canary.yaml | sort)"
expect "get tag --track canary" "$(promote get staging order-service tag --track canary)" "1.3.0"

# the app of apps now has staging-order-service-canary, and its values files exist
{
  # (other findings of the lint, if any, are reported by scripts/validate.d/40-argocd.sh)
  out=$(python3 "$repo/scripts/checks/argocd_lint.py" --repo "$copy" 2>&1)
  if grep -q '^ok - argocd: render the app of apps' <<<"$out" && ! grep -q 'order-service-canary' <<<"$out" &&
    helm template "$copy/argocd/platform" --set repoURL=x -f "$copy/argocd/platform/env/staging.yaml" |
    grep -q 'name: staging-order-service-canary$'; then
    pass "track-add: Argo CD renders staging-order-service-canary and its values files exist"
  else
    fail "track-add: Argo CD renders staging-order-service-canary and its values files exist" "$out"
  fi
}
sync_orig

# 3. canary weight steps
for w in 10 50 100; do
  out=$(promote canary staging order-service "$w" 2>&1) || fail "canary $w" "$out"
  expect "canary $w: get weight" "$(promote get staging order-service weight)" "$w"
done
echo "$out"
expect "canary: only istio/env/staging.yaml changed" "$(files_changed)" "istio/env/staging.yaml"
expect "canary: the changed line says weight: 100" "$(changed istio/env/staging.yaml | grep -c '^+.*weight: 100\b')" "1"
changed istio/env/staging.yaml
sync_orig

# 4. canary promoted: stable gets the canary's tag, weight 0, canary release removed
tag=$(promote get staging order-service tag --track canary)
if ! out=$(promote image staging order-service "$tag" 2>&1 && promote canary staging order-service 0 2>&1 &&
  promote track-remove staging order-service canary 2>&1); then
  fail "canary promotion" "$out"
fi
expect "promoted: stable runs the canary's tag" "$(promote get staging order-service tag)" "1.3.0"
expect "track-remove: canary file gone" "$(find "$copy/charts/microservice/env/staging" -name '*canary*' | wc -l)" "0"
expect "track-remove: tracks back to []" "$(grep -A1 'order-service:' "$copy/argocd/platform/env/staging.yaml" | tail -1)" "    tracks: []"
sync_orig

# 5. blue-green switch
for colour in green blue; do
  out=$(promote switch prod user-service "$colour" 2>&1) || fail "switch $colour" "$out"
  expect "switch $colour: get colour" "$(promote get prod user-service colour)" "$colour"
done
expect "switch: only istio/env/prod.yaml changed" "$(files_changed)" "istio/env/prod.yaml"
changed istio/env/prod.yaml

# 6. failures: clear, naming the file, no traceback, nothing written
sync_orig
err_case() { # WHAT EXPECTED-SUBSTRING ARGS...
  local what=$1 want=$2 out rc
  shift 2
  out=$(promote "$@" 2>&1)
  rc=$?
  if [ $rc -ne 0 ] && grep -qF -- "$want" <<<"$out" && ! grep -q Traceback <<<"$out" && [ -z "$(files_changed)" ]; then
    pass "$what fails clearly: $out"
  else
    fail "$what fails clearly" "exit $rc, want '$want' in:" "$out"
  fi
}
err_case "missing values file" "charts/microservice/env/staging/user-service-green.yaml: no such file" \
  image staging user-service 2.0.0 --track green
rm "$copy/istio/env/dev.yaml" "$orig/istio/env/dev.yaml"
err_case "missing istio env file" "istio/env/dev.yaml: no such file" canary dev user-service 10
err_case "weight out of range" "0..100" canary dev user-service 101
err_case "unknown colour" "blue or green" switch dev user-service purple
err_case "unknown environment" "unknown environment" image qa user-service 1.0.0
err_case "unknown service" "unknown service" image dev billing-service 1.0.0
err_case "bad tag" "not an image tag" image dev user-service 'v1;rm -rf /'

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
