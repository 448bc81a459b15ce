#!/usr/bin/env bash
# Promotion = a minimal edit of the values files in Git; Argo CD syncs the commit.
#
#   scripts/promote.sh image  ENV SERVICE TAG [--track TRACK]
#       image.tag of SERVICE in ENV: charts/microservice/env/ENV/SERVICE.yaml, or, for a
#       TRACK that is not the one that file runs, env/ENV/SERVICE-TRACK.yaml (the extra release).
#   scripts/promote.sh track-add    ENV SERVICE TRACK TAG
#       start an extra release SERVICE-TRACK (a canary, or the second colour) running TAG:
#       creates env/ENV/SERVICE-TRACK.yaml and lists TRACK in argocd/platform/env/ENV.yaml.
#   scripts/promote.sh track-remove ENV SERVICE TRACK
#       the reverse (Argo CD prunes the release).
#   scripts/promote.sh canary ENV SERVICE WEIGHT
#       percentage of SERVICE's traffic on the canary subset (0..100) in istio/env/ENV.yaml.
#   scripts/promote.sh switch ENV SERVICE COLOUR
#       blue-green: send all of SERVICE's traffic to COLOUR (blue|green) in istio/env/ENV.yaml.
#   scripts/promote.sh strategy ENV SERVICE (stable|canary|blueGreen)
#       the routing shape of SERVICE in istio/env/ENV.yaml (canary and switch set it too).
#   scripts/promote.sh get    ENV SERVICE (tag|weight|colour) [--track TRACK]
#       print the current value (for workflows).
#
# Options (before the command): --root DIR edits the files under DIR instead of this
# repository (the tests use a copy). Edits touch only the value's own characters: comments,
# quoting and layout stay as they were. A missing file or key fails with its name. Nothing is
# committed: promote.yml commits, Argo CD syncs.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
usage() { sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while [ $# -gt 0 ]; do
  case $1 in
    --root) root=$(cd "${2:?--root needs a directory}" && pwd); shift 2 ;;
    -h | --help) usage ;;
    *) break ;;
  esac
done
[ $# -ge 3 ] || usage

# ruamel.yaml finds each value's exact position; pinned, installed once into .tools/.
if ! python3 -c 'import ruamel.yaml' 2>/dev/null; then
  # shellcheck source=lib/tools.sh
  source "$here/lib/tools.sh"
  tools_pip ruamel.yaml==0.18.6 >&2
fi

PROMOTE_ROOT=$root exec python3 - "$@" <<'PY'
import os
import re
import sys

from ruamel.yaml import YAML

ROOT = os.environ["PROMOTE_ROOT"]
ENVS = ("dev", "staging", "prod")
SERVICES = ("user-service", "order-service", "notification-service")
COLOURS = ("blue", "green")
# Where the Istio routing chart keeps a service's canary weight and blue-green colour.
STRATEGY = ("services", "{service}", "strategy")  # stable | canary | blueGreen
CANARY_WEIGHT = ("services", "{service}", "canary", "weight")
ACTIVE_COLOUR = ("services", "{service}", "blueGreen", "active")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")  # an OCI tag


def die(msg):
    print(f"promote: {msg}", file=sys.stderr)
    sys.exit(1)


def rel(path):
    return os.path.relpath(path, ROOT)


def load(path):
    if not os.path.isfile(path):
        die(f"{rel(path)}: no such file")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    yaml = YAML()
    yaml.preserve_quotes = True
    try:
        return text, yaml.load(text)
    except Exception as e:  # ruamel raises many kinds
        die(f"{rel(path)}: not valid YAML: {e}")


def locate(data, keys, path):
    node = data
    for i, k in enumerate(keys[:-1]):
        node = node.get(k) if hasattr(node, "get") else None
        if node is None:
            die(f"{rel(path)}: no key {'.'.join(keys[:i + 1])}")
    if not hasattr(node, "lc") or keys[-1] not in node:
        die(f"{rel(path)}: no key {'.'.join(keys)}")
    return node, keys[-1]


def set_value(path, keys, value, quote=False):
    """set_scalar when the key exists; otherwise adds the missing keys (the file is re-dumped
    by ruamel, which keeps comments). Returns the old value (None when created)."""
    _, data = load(path)
    node = data
    for k in keys[:-1]:
        if not hasattr(node, "get") or node.get(k) is None:
            break
        node = node[k]
    else:
        if hasattr(node, "get") and keys[-1] in node:
            return set_scalar(path, keys, value, quote)
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    node = data
    for k in keys[:-1]:
        if node.get(k) is None:
            node[k] = {}
        node = node[k]
    node[keys[-1]] = value
    with open(path, "w", encoding="utf-8") as f:
        yaml.dump(data, f)
    return None


def get(path, keys):
    _, data = load(path)
    node, key = locate(data, keys, path)
    return node[key]


def set_scalar(path, keys, value, quote=False):
    """Rewrites only the characters of the scalar at keys; returns the old value."""
    text, data = load(path)
    node, key = locate(data, keys, path)
    old = node[key]
    if isinstance(old, (dict, list)):
        die(f"{rel(path)}: {'.'.join(keys)} is not a single value")
    line_no, col = node.lc.value(key)
    lines = text.splitlines(keepends=True)
    line = lines[line_no]
    m = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\']|\'\')*\'|[^\s,}\]#]+(?:[ \t]+[^\s,}\]#]+)*').match(line, col)
    if not m:
        die(f"{rel(path)}: cannot find the value of {'.'.join(keys)} on line {line_no + 1}")
    token = m.group(0)
    if token[0] in "\"'":
        new = f"{token[0]}{value}{token[0]}"
    else:
        new = f'"{value}"' if quote else str(value)
    lines[line_no] = line[:m.start()] + new + line[m.end():]
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(lines))
    return old


def env_file(env, name):
    return os.path.join(ROOT, "charts", "microservice", "env", env, f"{name}.yaml")


def tag_file(env, service, track):
    primary = env_file(env, service)
    if track is None:
        return primary
    _, data = load(primary)
    if (data or {}).get("track", "stable") == track:
        return primary
    return env_file(env, f"{service}-{track}")


def istio_file(env):
    return os.path.join(ROOT, "istio", "env", f"{env}.yaml")


def argocd_env_file(env):
    return os.path.join(ROOT, "argocd", "platform", "env", f"{env}.yaml")


STRATEGIES = ("stable", "canary", "blueGreen")


def set_strategy(path, service, strategy):
    keys = keys_for(STRATEGY, service)
    _, data = load(path)  # a missing file fails here, naming it
    current = data
    for k in keys:
        current = current.get(k) if hasattr(current, "get") else None
    if current != strategy:
        set_value(path, keys, strategy)
        print(f"{rel(path)}: {'.'.join(keys)} {current} -> {strategy}")


def keys_for(template, service):
    return tuple(k.format(service=service) for k in template)


def edit_tracks(env, service, track, add):
    path = argocd_env_file(env)
    text, data = load(path)
    svc = ((data or {}).get("services") or {}).get(service)
    if svc is None or "tracks" not in svc:
        die(f"{rel(path)}: no key services.{service}.tracks")
    tracks = svc["tracks"]
    if add and track not in tracks:
        tracks.append(track)
        tracks.fa.set_flow_style()  # keep `tracks: [canary]` on one line
    elif not add and track in tracks:
        tracks.remove(track)
    else:
        return False
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    with open(path, "w", encoding="utf-8") as f:
        yaml.dump(data, f)
    return True


def main(argv):
    track = None
    if "--track" in argv:
        i = argv.index("--track")
        if i + 1 >= len(argv):
            die("--track needs a value")
        track = argv[i + 1]
        del argv[i:i + 2]
    cmd, args = argv[0], argv[1:]
    if len(args) < 2:
        die(f"{cmd}: ENV and SERVICE are required")
    env, service = args[0], args[1]
    if env not in ENVS:
        die(f"unknown environment {env!r} (one of {', '.join(ENVS)})")
    if service not in SERVICES:
        die(f"unknown service {service!r} (one of {', '.join(SERVICES)})")
    if track is not None and not re.fullmatch(r"[a-z][a-z0-9-]*", track):
        die(f"bad track name {track!r}")

    def arg(n, what):
        if len(args) <= n:
            die(f"{cmd}: {what} is required")
        return args[n]

    if cmd == "image":
        tag = arg(2, "TAG")
        if not TAG_RE.match(tag):
            die(f"{tag!r} is not an image tag")
        path = tag_file(env, service, track)
        old = set_scalar(path, ("image", "tag"), tag, quote=True)
        print(f"{rel(path)}: image.tag {old} -> {tag}")
    elif cmd == "track-add":
        track, tag = arg(2, "TRACK"), arg(3, "TAG")
        if not re.fullmatch(r"[a-z][a-z0-9-]*", track) or track == "stable":
            die(f"bad extra track {track!r} (e.g. canary, blue, green)")
        if not TAG_RE.match(tag):
            die(f"{tag!r} is not an image tag")
        load(env_file(env, service))  # the primary release must exist
        path = env_file(env, f"{service}-{track}")
        if os.path.exists(path):
            old = set_scalar(path, ("image", "tag"), tag, quote=True)
            print(f"{rel(path)}: image.tag {old} -> {tag}")
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(f"# {service} in {env}: the {track} release beside the primary one (scripts/promote.sh).\n"
                        f"track: {track}\nprimary: false\nimage:\n  tag: \"{tag}\"\n")
            print(f"{rel(path)}: created ({track}, image.tag {tag})")
        if edit_tracks(env, service, track, add=True):
            print(f"{rel(argocd_env_file(env))}: services.{service}.tracks += {track}")
    elif cmd == "track-remove":
        track = arg(2, "TRACK")
        path = env_file(env, f"{service}-{track}")
        if edit_tracks(env, service, track, add=False):
            print(f"{rel(argocd_env_file(env))}: services.{service}.tracks -= {track}")
        if os.path.exists(path):
            os.remove(path)
            print(f"{rel(path)}: removed")
    elif cmd == "canary":
        raw = arg(2, "WEIGHT")
        if not raw.isdigit() or not 0 <= int(raw) <= 100:
            die(f"canary weight must be 0..100, not {raw!r}")
        path = istio_file(env)
        set_strategy(path, service, "canary")
        keys = keys_for(CANARY_WEIGHT, service)
        old = set_value(path, keys, int(raw))
        print(f"{rel(path)}: {'.'.join(keys)} {old} -> {int(raw)}")
    elif cmd == "switch":
        colour = arg(2, "COLOUR")
        if colour not in COLOURS:
            die(f"colour must be blue or green, not {colour!r}")
        path = istio_file(env)
        set_strategy(path, service, "blueGreen")
        keys = keys_for(ACTIVE_COLOUR, service)
        old = set_value(path, keys, colour)
        print(f"{rel(path)}: {'.'.join(keys)} {old} -> {colour}")
    elif cmd == "strategy":
        strategy = arg(2, "STRATEGY")
        if strategy not in STRATEGIES:
            die(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
        set_strategy(istio_file(env), service, strategy)
    elif cmd == "get":
        what = arg(2, "tag|weight|colour")
        if what == "tag":
            print(get(tag_file(env, service, track), ("image", "tag")))
        elif what == "weight":
            print(get(istio_file(env), keys_for(CANARY_WEIGHT, service)))
        elif what == "colour":
            print(get(istio_file(env), keys_for(ACTIVE_COLOUR, service)))
        else:
            die(f"get: unknown value {what!r}")
    else:
        die(f"unknown command {cmd!r} (image, track-add, track-remove, canary, switch, strategy, get)")


main(sys.argv[1:])
PY
