#!/usr/bin/env python3
"""Cross-checks the Argo CD app of apps against the repository, offline.

Starting from argocd/root.yaml it renders, with helm, every Application that points at a
chart of this repository under argocd/ (the way Argo CD would: same path, valueFiles and
parameters), recursively, and then checks what Argo CD would only find out on a cluster:

  paths     every Application's path and values files exist in the repository, and every
            per-environment values file of charts/ is used by an Application
  project   every Application's project exists and allows its source repositories and its
            destination (cluster, namespace); the repository URL is written once
  waves     sync waves order the AppProject < parents, and infrastructure < services < routing
  sync      automated prune + self-heal outside prod, manual prod, retries with backoff,
            CreateNamespace, HPA-owned replicas ignored on the services
  kinds     every kind our own charts and manifests render (and the app of apps itself) is
            whitelisted by the AppProject, in a namespace the AppProject allows

Prints one `ok - ...` / `not ok - ...` line per check and exits 1 if any failed.
--dump FILE writes every Argo CD resource (with where it came from) as JSON for
argocd_schema.mjs. Needs PyYAML and helm on PATH.
"""
import argparse
import fnmatch
import glob
import json
import os
import subprocess
import sys
import tempfile

import yaml

ARGO_KINDS = {"Application", "ApplicationSet", "AppProject"}
CLUSTER_SCOPED = {
    "Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "PriorityClass",
    "StorageClass", "IngressClass", "PersistentVolume", "KongClusterPlugin",
    "APIService", "ClusterIssuer",
}
TIER_ORDER = ["infrastructure", "services", "routing"]
MANUAL_ENVS = {"prod"}


class Lint:
    def __init__(self, repo):
        self.repo = repo
        self.failed = 0
        self.docs = []  # (origin, doc)
        self.rendered_by = {}  # Application name -> what its argocd/ chart rendered
        self.repo_url = None

    def report(self, what, problems):
        if problems:
            self.failed += 1
            print(f"not ok - {what}")
            for p in problems:
                print(f"    {p}")
        else:
            print(f"ok - {what}")

    # ---- loading and rendering -------------------------------------------------------
    def load_yaml_docs(self, text, origin):
        out = []
        for doc in yaml.safe_load_all(text):
            if not isinstance(doc, dict):
                continue
            if doc.get("kind") == "List":
                out.extend((origin, d) for d in doc.get("items") or [])
            else:
                out.append((origin, doc))
        return out

    def helm_template(self, release, path, value_files, params, namespace):
        cmd = ["helm", "template", release, os.path.join(self.repo, path), "--namespace", namespace]
        for vf in value_files:
            cmd += ["-f", os.path.join(self.repo, path, vf)]
        for p in params:
            flag = "--set-string" if p.get("forceString") else "--set"
            cmd += [flag, f"{p['name']}={p['value']}"]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            errors = [l for l in res.stderr.splitlines() if l.strip() and "--debug" not in l]
            raise RuntimeError(f"helm template {path}: " + " / ".join(errors[:5]))
        return res.stdout

    def render_tree(self):
        root = os.path.join(self.repo, "argocd", "root.yaml")
        with open(root, encoding="utf-8") as f:
            self.docs = self.load_yaml_docs(f.read(), "argocd/root.yaml")
        apps = [d for _, d in self.docs if d.get("kind") == "Application"]
        if not apps:
            raise RuntimeError("argocd/root.yaml holds no Application")
        self.repo_url = apps[0]["spec"]["source"]["repoURL"]
        seen, queue = {}, list(apps)
        while queue:
            app = queue.pop(0)
            for src in sources(app):
                path = src.get("path")
                if src.get("repoURL") != self.repo_url or not path or not path.startswith("argocd/"):
                    continue
                if not os.path.isfile(os.path.join(self.repo, path, "Chart.yaml")):
                    continue
                helm = src.get("helm") or {}
                key = (path, tuple(helm.get("valueFiles") or []),
                       json.dumps(helm.get("parameters") or [], sort_keys=True))
                if key in seen:
                    self.rendered_by[app["metadata"]["name"]] = seen[key]
                    continue
                text = self.helm_template(helm.get("releaseName") or app["metadata"]["name"], path,
                                          helm.get("valueFiles") or [], helm.get("parameters") or [],
                                          app["spec"]["destination"].get("namespace", "argocd"))
                origin = f"{path} rendered for Application {app['metadata']['name']}"
                new = self.load_yaml_docs(text, origin)
                seen[key] = self.rendered_by[app["metadata"]["name"]] = [d for _, d in new]
                self.docs.extend(new)
                queue.extend(d for _, d in new if d.get("kind") == "Application")

    def apps(self):
        return [d for _, d in self.docs if d.get("kind") == "Application"]

    def projects(self):
        return {d["metadata"]["name"]: d for _, d in self.docs if d.get("kind") == "AppProject"}

    # ---- checks -------------------------------------------------------------------------
    def check_paths(self):
        problems, used = [], set()
        for app in self.apps():
            name = app["metadata"]["name"]
            refs = {s["ref"]: s for s in sources(app) if s.get("ref")}
            for src in sources(app):
                helm = src.get("helm") or {}
                if src.get("repoURL") == self.repo_url and src.get("path") is not None:
                    base = os.path.join(self.repo, src["path"])
                    if not os.path.isdir(base):
                        problems.append(f"{name}: path {src['path']}/ does not exist")
                        continue
                    if not helm and not any(f.endswith((".yaml", ".yml", ".json")) for f in os.listdir(base)):
                        problems.append(f"{name}: path {src['path']}/ holds no manifests")
                    if helm and not os.path.isfile(os.path.join(base, "Chart.yaml")):
                        problems.append(f"{name}: path {src['path']}/ has helm settings but no Chart.yaml")
                for vf in helm.get("valueFiles") or []:
                    if vf.startswith("$"):
                        ref, _, rel = vf[1:].partition("/")
                        if ref not in refs or refs[ref].get("repoURL") != self.repo_url:
                            problems.append(f"{name}: values file {vf}: no source ref '{ref}' to this repository")
                            continue
                        full = os.path.join(self.repo, rel)
                    elif src.get("repoURL") == self.repo_url:
                        full = os.path.join(self.repo, src["path"], vf)
                    else:
                        problems.append(f"{name}: values file {vf} of an upstream chart: use a $ref to this repository")
                        continue
                    used.add(os.path.normpath(full))
                    if not os.path.isfile(full):
                        problems.append(f"{name}: values file {os.path.relpath(full, self.repo)} does not exist")
        # and the other way round: a per-environment values file no Application uses is drift
        # (e.g. a <service>-<track>.yaml whose track is not listed in argocd/platform/env/<env>.yaml)
        for env_dir in sorted(glob.glob(os.path.join(self.repo, "charts", "*", "env", "*"))):
            for f in sorted(glob.glob(os.path.join(env_dir, "*.yaml"))):
                if os.path.normpath(f) not in used:
                    problems.append(f"{os.path.relpath(f, self.repo)} is used by no Application "
                                    "(list its track in argocd/platform/env/<env>.yaml, or delete it)")
        self.report(f"argocd: every Application's path and values files exist ({len(self.apps())} Applications)", problems)

    def check_project(self):
        problems, projects = [], self.projects()
        for app in self.apps():
            name, spec = app["metadata"]["name"], app["spec"]
            proj = projects.get(spec.get("project"))
            if proj is None:
                problems.append(f"{name}: project {spec.get('project')!r} is not defined here")
                continue
            pspec = proj["spec"]
            for src in sources(app):
                if not any(fnmatch.fnmatchcase(src.get("repoURL", ""), pat) for pat in pspec.get("sourceRepos") or []):
                    problems.append(f"{name}: source {src.get('repoURL')} not in sourceRepos of project {proj['metadata']['name']}")
                if src.get("chart") and not is_pinned(src.get("targetRevision", "")):
                    problems.append(f"{name}: chart {src['chart']} not pinned to an exact version ({src.get('targetRevision')!r})")
            dest = spec.get("destination") or {}
            if not any(dest_allowed(dest, d) for d in pspec.get("destinations") or []):
                where = dest.get("name") or dest.get("server")
                problems.append(f"{name}: destination {where}/{dest.get('namespace')} not allowed by project {proj['metadata']['name']}")
        # the repository URL is one value: written once, in root.yaml
        hits = []
        for dirpath, _, files in os.walk(os.path.join(self.repo, "argocd")):
            for fn in files:
                p = os.path.join(dirpath, fn)
                with open(p, encoding="utf-8", errors="replace") as f:
                    n = f.read().count(self.repo_url or "\0")
                if n:
                    hits.append((os.path.relpath(p, self.repo), n))
        if hits != [("argocd/root.yaml", 1)]:
            problems.append(f"repository URL must be written exactly once, in argocd/root.yaml; found {hits}")
        self.report("argocd: every source repository and destination namespace is allowed by the AppProject", problems)

    def check_waves(self):
        problems = []
        def wave(d):
            return int(((d.get("metadata") or {}).get("annotations") or {}).get("argocd.argoproj.io/sync-wave", "0"))
        # parents of one render: the AppProject must come before the Applications using it
        by_origin = {}
        for origin, d in self.docs:
            by_origin.setdefault(origin, []).append(d)
        for origin, docs in by_origin.items():
            projs = [d for d in docs if d.get("kind") == "AppProject"]
            users = [d for d in docs if d.get("kind") == "Application"
                     and d["spec"].get("project") in {p["metadata"]["name"] for p in projs}]
            for p in projs:
                for a in users:
                    if wave(a) <= wave(p):
                        problems.append(f"{a['metadata']['name']} (wave {wave(a)}) does not come after its AppProject (wave {wave(p)})")
            tiers = {}
            for a in (d for d in docs if d.get("kind") == "Application"):
                labels = a["metadata"].get("labels") or {}
                tier = labels.get("platform.microservices/tier")
                if tier is None:
                    continue
                if tier not in TIER_ORDER:
                    problems.append(f"{a['metadata']['name']}: unknown tier {tier!r}")
                    continue
                tiers.setdefault(tier, []).append((wave(a), a["metadata"]["name"]))
            if tiers and set(tiers) != set(TIER_ORDER):
                problems.append(f"{origin}: tiers present {sorted(tiers)}, expected {TIER_ORDER}")
            for lo, hi in zip(TIER_ORDER, TIER_ORDER[1:]):
                if lo in tiers and hi in tiers:
                    top, low = max(tiers[lo]), min(tiers[hi])
                    if top[0] >= low[0]:
                        problems.append(f"{top[1]} ({lo}, wave {top[0]}) must sync before {low[1]} ({hi}, wave {low[0]})")
        self.report("argocd: sync waves order AppProject < Applications and infrastructure < services < routing", problems)

    def check_sync(self):
        problems = []
        for app in self.apps():
            name, spec = app["metadata"]["name"], app["spec"]
            labels = app["metadata"].get("labels") or {}
            env, tier = labels.get("platform.microservices/env"), labels.get("platform.microservices/tier")
            sp = spec.get("syncPolicy") or {}
            backoff = (sp.get("retry") or {}).get("backoff") or {}
            if not (sp.get("retry", {}).get("limit") and backoff.get("duration") and backoff.get("factor")):
                problems.append(f"{name}: no retry with backoff")
            if tier is None:
                continue  # root and parents: plumbing
            auto = sp.get("automated")
            if env in MANUAL_ENVS and auto is not None:
                problems.append(f"{name}: {env} must sync manually (no syncPolicy.automated)")
            if env not in MANUAL_ENVS and not (auto and auto.get("prune") and auto.get("selfHeal")):
                problems.append(f"{name}: {env} needs automated sync with prune and selfHeal")
            if "CreateNamespace=true" not in (sp.get("syncOptions") or []):
                problems.append(f"{name}: no CreateNamespace=true")
            if tier == "services":
                ignored = [i for i in spec.get("ignoreDifferences") or []
                           if i.get("group") == "apps" and i.get("kind") == "Deployment"
                           and "/spec/replicas" in (i.get("jsonPointers") or [])]
                if not ignored:
                    problems.append(f"{name}: replicas of Deployments (HPA-owned) not ignored")
                if "RespectIgnoreDifferences=true" not in (sp.get("syncOptions") or []):
                    problems.append(f"{name}: ignoreDifferences without RespectIgnoreDifferences=true (sync would reset replicas)")
        self.report("argocd: automated prune/self-heal (prod manual), retries with backoff, CreateNamespace, HPA replicas ignored", problems)

    def check_kinds(self):
        problems, rendered = [], 0
        projects = self.projects()
        cache = {}
        for app in self.apps():
            name, spec = app["metadata"]["name"], app["spec"]
            proj = projects.get(spec.get("project"))
            if proj is None:
                continue  # reported by the project check
            for src in sources(app):
                path = src.get("path")
                if src.get("repoURL") != self.repo_url or not path:
                    continue
                docs = self.rendered_by.get(name) if path.startswith("argocd/") else self.render_source(app, src, cache)
                if isinstance(docs, str):
                    problems.append(f"{name}: cannot render {path}: {docs}")
                    continue
                for d in docs or []:
                    kind, group = d.get("kind"), d.get("apiVersion", "").rpartition("/")[0]
                    if not kind:
                        continue
                    rendered += 1
                    pspec, pname = proj["spec"], proj["metadata"]["name"]
                    cluster_scoped = kind in CLUSTER_SCOPED
                    lst = pspec.get("clusterResourceWhitelist" if cluster_scoped else "namespaceResourceWhitelist")
                    if not any(fnmatch.fnmatchcase(group, w.get("group", "")) and fnmatch.fnmatchcase(kind, w.get("kind", ""))
                               for w in lst or []):
                        problems.append(f"{name}: {group or 'core'}/{kind} ({path}) not whitelisted by project {pname}")
                    if cluster_scoped:
                        continue
                    dest = dict(spec.get("destination") or {})
                    dest["namespace"] = (d.get("metadata") or {}).get("namespace") or dest.get("namespace", "")
                    if not any(dest_allowed(dest, a) for a in pspec.get("destinations") or []):
                        problems.append(f"{name}: {kind} {d['metadata'].get('name')} goes to namespace "
                                        f"{dest['namespace']}, not a destination of project {pname}")
        self.report(f"argocd: every kind and namespace our charts and manifests render is allowed by the AppProject ({rendered} objects)",
                    sorted(set(problems)))

    def render_source(self, app, src, cache):
        """The objects a repository source renders (Helm chart or plain directory); a str on error."""
        path, helm = src["path"], src.get("helm") or {}
        namespace = app["spec"]["destination"].get("namespace", "default")
        key = (path, tuple(helm.get("valueFiles") or []), namespace)
        if key not in cache:
            base = os.path.join(self.repo, path)
            try:
                if os.path.isfile(os.path.join(base, "Chart.yaml")):
                    if any(not os.path.isfile(os.path.join(base, v)) for v in helm.get("valueFiles") or []):
                        cache[key] = []  # reported by the paths check
                        return cache[key]
                    text = self.helm_template(helm.get("releaseName") or "release", path,
                                              helm.get("valueFiles") or [], helm.get("parameters") or [], namespace)
                elif os.path.isdir(base):
                    text = "\n---\n".join(read(os.path.join(base, f)) for f in sorted(os.listdir(base))
                                          if f.endswith((".yaml", ".yml")))
                else:
                    text = ""
                cache[key] = [d for _, d in self.load_yaml_docs(text, path)]
            except (RuntimeError, yaml.YAMLError) as e:
                cache[key] = str(e)
        return cache[key]


def sources(app):
    spec = app.get("spec") or {}
    return spec.get("sources") or ([spec["source"]] if spec.get("source") else [])


def dest_allowed(dest, allowed):
    ns_ok = fnmatch.fnmatchcase(dest.get("namespace", ""), allowed.get("namespace", ""))
    if dest.get("name") is not None:
        return ns_ok and allowed.get("name") is not None and fnmatch.fnmatchcase(dest["name"], allowed["name"])
    return ns_ok and allowed.get("server") is not None and fnmatch.fnmatchcase(dest.get("server", ""), allowed["server"])


def is_pinned(rev):
    parts = str(rev).lstrip("v").split(".")
    return len(parts) == 3 and all(p.isdigit() for p in parts)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=os.getcwd())
    ap.add_argument("--dump", help="write the Argo CD resources as JSON here")
    args = ap.parse_args()
    lint = Lint(os.path.abspath(args.repo))
    try:
        lint.render_tree()
    except (RuntimeError, OSError, yaml.YAMLError, KeyError) as e:
        print(f"not ok - argocd: render the app of apps from argocd/root.yaml\n    {e}")
        return 1
    kinds = {}
    for _, d in lint.docs:
        kinds[d.get("kind")] = kinds.get(d.get("kind"), 0) + 1
    print(f"ok - argocd: render the app of apps from argocd/root.yaml ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))})")
    if args.dump:
        with open(args.dump, "w", encoding="utf-8") as f:
            json.dump([{"origin": o, "doc": d} for o, d in lint.docs if d.get("kind") in ARGO_KINDS], f)
    lint.check_paths()
    lint.check_project()
    lint.check_waves()
    lint.check_sync()
    lint.check_kinds()
    return 1 if lint.failed else 0


if __name__ == "__main__":
    sys.exit(main())
