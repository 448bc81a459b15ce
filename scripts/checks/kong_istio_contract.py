"""The names the Kong and Istio checks rely on, read from docs/CONTRACTS.md (the source of truth).

Kept in one place so a renamed service or port in the contract fails every check that depends on
it, instead of each check carrying its own copy of the table.
"""

import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[2]
CONTRACTS = REPO / "docs" / "CONTRACTS.md"

# | user-service | 3001 | `USER_SERVICE__` | `user-service` |
_ROW = re.compile(r"^\|\s*([a-z][a-z-]*-service)\s*\|\s*(\d+)\s*\|")
_NAMESPACE = re.compile(r"^Namespace:\s*`([a-z0-9-]+)`", re.M)
_TRACKS = re.compile(r"the track is ((?:`[a-z]+`,?\s*(?:or\s*)?)+)")


def load(path=CONTRACTS):
    """Returns {"services": {name: port}, "namespace": str, "tracks": [str]}."""
    text = pathlib.Path(path).read_text(encoding="utf-8")
    services = {}
    for line in text.splitlines():
        m = _ROW.match(line)
        if m:
            services[m.group(1)] = int(m.group(2))
    ns = _NAMESPACE.search(text)
    tracks = _TRACKS.search(text.replace("\n", " "))
    if not services or not ns or not tracks:
        raise SystemExit(f"{path}: cannot read the service table, namespace or tracks")
    return {
        "services": services,
        "namespace": ns.group(1),
        "tracks": re.findall(r"`([a-z]+)`", tracks.group(1)),
    }


def service_fqdn(service, namespace):
    return f"{service}.{namespace}.svc.cluster.local"


def principal(service_account, namespace, trust_domain="cluster.local"):
    return f"{trust_domain}/ns/{namespace}/sa/{service_account}"


class Checks:
    """One line per check, `ok - WHAT` or `not ok - WHAT` with the reasons indented below."""

    def __init__(self):
        self.failed = 0

    def report(self, what, errors):
        print(("not ok - " if errors else "ok - ") + what)
        for e in errors:
            print(f"    {e}")
        self.failed += bool(errors)

    def exit_code(self):
        return 1 if self.failed else 0
