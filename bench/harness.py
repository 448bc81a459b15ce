#!/usr/bin/env python3
"""The benchmark harness behind `make bench` (started by bench/run.sh, which builds first).

For each backend (SQLite, then PostgreSQL) it starts a fresh NATS with JetStream, a fresh
database, the SMTP sink and the release binaries of the services that were built, seeds
thousands of users and orders through the public API, and drives every scenario with wrk
(2 threads, 64 connections, loopback): a warm-up run, then several measured runs whose medians
are reported. The reference ceiling (bench-ceiling: a constant small JSON from a bare actix-web
handler) is measured in the same run with the same settings, and every throughput is also
given as a fraction of it. Results: bench/results/<name>.md and .json.

Everything it starts runs in its own process group and is stopped on exit, Ctrl-C or SIGTERM.
Only the Python standard library is used.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
WRK_DIR = BENCH / "wrk"
RESULTS = BENCH / "results"

SERVICES = ["user-service", "order-service", "notification-service"]
PREFIX = {s: s.upper().replace("-", "_") for s in SERVICES}
ADMIN_EMAIL = "admin@bench.example.com"
ADMIN_PASSWORD = "bench-admin-password"
MIB = 1024 * 1024


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


SMOKE = os.environ.get("BENCH_SMOKE", "0") not in ("", "0", "false", "no")
THREADS = env_int("BENCH_THREADS", 2)
CONNECTIONS = env_int("BENCH_CONNECTIONS", 64)
# wrk shares the services' cores; as a SCHED_BATCH task its wake-ups do not preempt them (why,
# and what it measured: bench/README.md). SCHED_BATCH is Linux's: elsewhere wrk stays an
# ordinary task, and the results say so. The parameter is built here, before any fork: the
# generator's child only makes the system call.
GENERATOR_POLICY = os.environ.get("BENCH_GENERATOR_POLICY", "batch")
if GENERATOR_POLICY not in ("batch", "normal"):
    raise SystemExit(f"BENCH_GENERATOR_POLICY must be batch or normal, not {GENERATOR_POLICY!r}")
BATCH_PARAM = os.sched_param(0) if GENERATOR_POLICY == "batch" and hasattr(os, "SCHED_BATCH") else None
WARMUP_S = env_int("BENCH_WARMUP_SECONDS", 1 if SMOKE else 2)
RUN_S = env_int("BENCH_DURATION_SECONDS", 1 if SMOKE else 5)
RUNS = env_int("BENCH_RUNS", 1 if SMOKE else 3)
N_USERS = env_int("BENCH_USERS", 200 if SMOKE else 5000)
N_TOKEN_USERS = env_int("BENCH_TOKEN_USERS", 16 if SMOKE else 256)
N_ORDERS = env_int("BENCH_ORDERS", 200 if SMOKE else 5000)
PIPELINE_S = env_int("BENCH_PIPELINE_SECONDS", 3 if SMOKE else 30)
PIPELINE_RATE = env_int("BENCH_PIPELINE_RATE", 200 if SMOKE else 2000)
# One 30 s run's order→e-mail p99 ranged from 123 to 408 ms on the same binaries and machine
# (2026-11-25): a single run cannot say where the target stands, so the pipeline runs like the
# scenarios, several times, and the table gives the median and every run's figure.
PIPELINE_RUNS = env_int("BENCH_PIPELINE_RUNS", 1 if SMOKE else 3)
# The drain: orders created while notification-service is paused, then mailed as fast as it can.
DRAIN_ORDERS_S = env_int("BENCH_DRAIN_SECONDS", 2 if SMOKE else 10)
DRAIN_RATE = env_int("BENCH_DRAIN_RATE", 200 if SMOKE else 1500)
STARTUP_SAMPLES = env_int("BENCH_STARTUP_SAMPLES", 1 if SMOKE else 5)
BACKENDS = os.environ.get("BENCH_BACKENDS", "sqlite postgres").split()
BIN_DIR = Path(os.environ.get("BENCH_BIN_DIR", REPO / "target" / "release"))
BUILT = set(os.environ.get("BENCH_BUILT", " ".join(SERVICES)).split())
NATS_BIN = os.environ.get("BENCH_NATS_BIN") or shutil.which("nats-server") or "nats-server"
PG_BINDIR = os.environ.get("BENCH_PG_BINDIR", "")
SEED = env_int("BENCH_SEED", 42)
NAME = os.environ.get("BENCH_NAME", "smoke" if SMOKE else "latest")
# BENCH_PROFILE=get_user,create_order,pipeline: `perf record` the machine and the scenario's
# service (order-service for the pipeline; BENCH_PROFILE_SERVICE=notification-service: another
# one, e.g. the consumer while orders are created) during the measured runs; reports go to
# bench/results/profile-<backend>-<scenario>.txt, the perf data next to them.
PROFILE = set(filter(None, os.environ.get("BENCH_PROFILE", "").split(",")))
PROFILE_SERVICE = os.environ.get("BENCH_PROFILE_SERVICE")
# BENCH_ONLY=get_user,pipeline: run only these scenarios (the ceiling always runs); for working
# on one figure without the whole run.
ONLY = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))
ARGON2_RUN_S = max(RUN_S, 3)  # an argon2 request under 64 connections takes over a second


def log(message: str) -> None:
    print(message, flush=True)


# ---------------------------------------------------------------------------------------------
# Processes


class Processes:
    """Everything the harness starts, each in its own process group; stopped in reverse order."""

    def __init__(self, pid_file: Path):
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.pid_file = pid_file

    def start(self, name, argv, env=None, log_file=None, **kwargs) -> subprocess.Popen:
        out = open(log_file, "ab") if log_file else subprocess.DEVNULL
        proc = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, **kwargs)
        if log_file:
            out.close()
        self.procs.append((name, proc))
        self._write_pids()
        return proc

    def _write_pids(self) -> None:
        self.pid_file.write_text("".join(f"{p.pid}\n" for _, p in self.procs if p.poll() is None))

    def stop(self, proc: subprocess.Popen, timeout: float = 15) -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(5)
        self.procs = [(n, p) for n, p in self.procs if p is not proc]
        self._write_pids()

    def stop_all(self) -> None:
        for _, proc in reversed(list(self.procs)):
            self.stop(proc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_port(port: int, seconds: float, what: str, proc=None) -> None:
    deadline = time.monotonic() + seconds
    while not port_open(port):
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} during start-up")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not open port {port} within {seconds} s")
        time.sleep(0.02)


def vm_rss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


# ---------------------------------------------------------------------------------------------
# HTTP client for seeding and checks (keep-alive connection per thread)


class Api:
    def __init__(self):
        self.local = threading.local()

    def call(self, port, method, path, body=None, token=None, timeout=30):
        conns = self.local.__dict__.setdefault("conns", {})
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            conn = conns.get(port)
            if conn is None:
                conn = conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                try:
                    payload = json.loads(raw) if raw else None
                except ValueError:
                    payload = raw.decode(errors="replace")
                return resp.status, payload
            except (http.client.HTTPException, OSError):
                conn.close()
                conns.pop(port, None)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def expect(self, status, port, method, path, body=None, token=None):
        got, payload = self.call(port, method, path, body, token)
        if got != status:
            raise RuntimeError(f"{method} {path}: expected {status}, got {got}: {str(payload)[:300]}")
        return payload


API = Api()


def ready_once(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        conn.request("GET", "/ready")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# wrk


def cpu_ticks() -> tuple[int, int]:
    """(all ticks, steal ticks) of the machine so far, from /proc/stat (0, 0 where unreadable)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0, 0
    # user nice system idle iowait irq softirq steal (guest time is already inside user)
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds used so far by a process (all its threads), its living children and the
    children it has reaped: a service, or PostgreSQL's postmaster with its backends (each of which
    PostgreSQL puts in a session of its own, so a process group would miss them)."""
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # After "pid (comm) ": state, ppid, … utime, stime, cutime, cstime (fields 14-17).
        fields = stat[stat.rindex(")") + 2:].split()
        if int(entry.name) == pid:
            ticks += sum(int(x) for x in fields[11:15])
        elif int(fields[1]) == pid:
            ticks += sum(int(x) for x in fields[11:13])
    return ticks / CLK_TCK


@contextlib.contextmanager
def cpu_used(processes: dict[str, int]):
    """Yields a dict that holds, once the block is done, the CPU seconds each process (with its
    children, see `tree_cpu_s`) used during it."""
    before = {name: tree_cpu_s(pid) for name, pid in processes.items()}
    used: dict[str, float] = {}
    try:
        yield used
    finally:
        used.update({name: tree_cpu_s(pid) - before[name] for name, pid in processes.items()})


def batch_generator() -> None:
    """In the generator's child, before exec."""
    os.sched_setscheduler(0, os.SCHED_BATCH, BATCH_PARAM)


def wrk(url: str, script: str, seconds: int, extra_env: dict) -> dict:
    env = dict(os.environ)
    env.update({
        "BENCH_WRK_DIR": str(WRK_DIR),
        "BENCH_THREADS": str(THREADS),
        "BENCH_CONNECTIONS": str(CONNECTIONS),
        "BENCH_SEED": str(SEED),
    })
    env.update({k: str(v) for k, v in extra_env.items()})
    env["BENCH_TAG"] = f"{extra_env.get('BENCH_TAG', '')}{time.monotonic_ns()}"  # unique per run
    argv = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s",
            "-s", str(WRK_DIR / script), url]
    ticks_before = cpu_ticks()
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60,
                         preexec_fn=batch_generator if BATCH_PARAM else None)
    ticks_after = cpu_ticks()
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            result = json.loads(line[len("BENCH_RESULT "):])
            # On a virtual machine the hypervisor can take much of the CPU ("steal"): the
            # figures of a run with high steal say more about the neighbours than the code.
            total = ticks_after[0] - ticks_before[0]
            result["steal_pct"] = 100 * (ticks_after[1] - ticks_before[1]) / total if total > 0 else 0.0
            seconds_run = result["duration_us"] / 1e6
            result["rps"] = result["requests"] / seconds_run if seconds_run else 0.0
            result["errors"] = sum(result[k] for k in (
                "errors_connect", "errors_read", "errors_write", "errors_status", "errors_timeout"))
            return result
    raise RuntimeError(f"wrk gave no result (exit {out.returncode}): {out.stderr.strip()[:500]}")


class RssSampler:
    """Samples VmRSS of the running services every 100 ms; peaks per labelled phase."""

    def __init__(self):
        self.pids: dict[str, int] = {}
        self.phase: str | None = None
        self.peaks: dict[str, dict[str, int]] = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped.wait(0.1):
            phase = self.phase
            if phase is None:
                continue
            for service, pid in list(self.pids.items()):
                rss = vm_rss(pid)
                if rss is not None:
                    peaks = self.peaks.setdefault(phase, {})
                    peaks[service] = max(peaks.get(service, 0), rss)

    def close(self):
        self.stopped.set()
        self.thread.join()


# ---------------------------------------------------------------------------------------------
# One backend's run


class Run:
    def __init__(self, backend: str, procs: Processes, work: Path, sampler: RssSampler):
        self.backend = backend
        self.procs = procs
        self.work = work / backend
        self.work.mkdir(parents=True, exist_ok=True)
        self.logs = RESULTS / "logs" / backend
        shutil.rmtree(self.logs, ignore_errors=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.sampler = sampler
        self.available = [s for s in SERVICES if s in BUILT and (BIN_DIR / s).exists()]
        self.ports = {s: free_port() for s in SERVICES}
        self.ports["ceiling"] = free_port()
        self.ports["nats"] = free_port()
        self.ports["smtp"] = free_port()
        self.service_procs: dict[str, subprocess.Popen] = {}
        # Processes whose CPU the scenarios account for besides their service's.
        self.infra_pids: dict[str, int] = {}
        self.ceiling_pid: int | None = None
        self.result: dict = {"backend": backend, "scenarios": {}, "skipped": {}}
        self.sink_log = self.work / "smtp-sink.log"
        self.db_urls: dict[str, str] = {}
        self.seed: dict = {}
        self.pg_port: int | None = None

    # -- infrastructure ------------------------------------------------------------------

    def start_infrastructure(self, pg_port: int | None):
        self.pg_port = pg_port
        if pg_port:
            self.infra_pids["database"] = next(p.pid for name, p in self.procs.procs if name == "postgres")
        nats_dir = self.work / "nats"
        nats_dir.mkdir()
        proc = self.procs.start("nats", [NATS_BIN, "-js", "-a", "127.0.0.1", "-p", str(self.ports["nats"]),
                                         "-sd", str(nats_dir)], log_file=self.logs / "nats.log")
        self.infra_pids["nats"] = proc.pid
        wait_port(self.ports["nats"], 15, "nats-server", proc)
        self.sink_log.touch()
        proc = self.procs.start("smtp-sink", [str(BIN_DIR / "bench-smtp-sink"), str(self.ports["smtp"]),
                                              str(self.sink_log)], log_file=self.logs / "smtp-sink.log")
        self.infra_pids["smtp-sink"] = proc.pid
        wait_port(self.ports["smtp"], 10, "bench-smtp-sink", proc)
        proc = self.procs.start("ceiling", [str(BIN_DIR / "bench-ceiling"), str(self.ports["ceiling"])],
                                log_file=self.logs / "ceiling.log")
        self.ceiling_pid = proc.pid
        wait_port(self.ports["ceiling"], 10, "bench-ceiling", proc)
        for service in SERVICES:
            if self.backend == "sqlite":
                self.db_urls[service] = f"sqlite://{self.work / (service + '.db')}?mode=rwc"
            else:
                db = "bench_" + service.split("-")[0]
                self.psql(f"CREATE DATABASE {db}")
                self.db_urls[service] = f"postgres://postgres@127.0.0.1:{pg_port}/{db}"

    def service_env(self, service: str) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(PREFIX.values()))}
        p = PREFIX[service]
        env.update({
            "APP_ENV": "bench",
            "CONFIG_DIR": str(REPO / service / "config"),
            f"{p}__HTTP__HOST": "127.0.0.1",
            f"{p}__HTTP__PORT": str(self.ports[service]),
            f"{p}__DATABASE__URL": self.db_urls[service],
            f"{p}__NATS__URL": f"nats://127.0.0.1:{self.ports['nats']}",
        })
        jwks = f"http://127.0.0.1:{self.ports['user-service']}/.well-known/jwks.json"
        if service == "user-service":
            env[f"{p}__AUTH__ADMIN_EMAIL"] = ADMIN_EMAIL
            env[f"{p}__AUTH__ADMIN_PASSWORD"] = ADMIN_PASSWORD
            key = self.work.parent / "jwt.pem"
            if key.exists():
                env[f"{p}__AUTH__SIGNING_KEY_PATH"] = str(key)
        elif service == "order-service":
            env[f"{p}__AUTH__JWKS_URL"] = jwks
            env[f"{p}__USER_SERVICE__URL"] = f"http://127.0.0.1:{self.ports['user-service']}"
        else:
            env[f"{p}__AUTH__JWKS_URL"] = jwks
            env[f"{p}__SMTP__URL"] = f"smtp://127.0.0.1:{self.ports['smtp']}"
            env[f"{p}__MAIL__OUTBOX_DIR"] = str(self.work / "outbox")
        # BENCH_SET_<SETTING>=value: a service setting for this run, e.g.
        # BENCH_SET_NOTIFICATION_SERVICE__CONSUMER__BATCH=64 (the service's own variables are
        # not passed through: the environment of the shell running the bench is not the bench's).
        for key, value in os.environ.items():
            if key.startswith("BENCH_SET_" + p + "__"):
                env[key.removeprefix("BENCH_SET_")] = value
        return env

    def start_service(self, service: str, timeout: float = 60) -> float:
        """Starts the service and returns the seconds from exec to the first 200 on /ready."""
        port = self.ports[service]
        started = time.monotonic()
        proc = self.procs.start(service, [str(BIN_DIR / service)], env=self.service_env(service),
                                log_file=self.logs / f"{service}.log", cwd=str(self.work))
        while not ready_once(port):
            if proc.poll() is not None:
                tail = (self.logs / f"{service}.log").read_text(errors="replace").splitlines()[-10:]
                raise RuntimeError(f"{service} exited during start-up:\n  " + "\n  ".join(tail))
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{service} not ready within {timeout} s")
            time.sleep(0.002)
        elapsed = time.monotonic() - started
        self.service_procs[service] = proc
        self.sampler.pids[service] = proc.pid
        return elapsed

    def stop_service(self, service: str):
        self.sampler.pids.pop(service, None)
        proc = self.service_procs.pop(service, None)
        if proc is not None:
            self.procs.stop(proc)

    # -- seeding ---------------------------------------------------------------------------

    def seed_data(self):
        us = self.ports["user-service"]
        rng = random.Random(SEED)
        t0 = time.monotonic()
        admin = API.expect(200, us, "POST", "/api/auth/login",
                           {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})["data"]["token"]

        def register(i, password=None):
            body = {"name": f"Bench User {i}", "email": f"user{i}@bench.example.com"}
            if password:
                body["password"] = password
            return API.expect(201, us, "POST", "/api/users", body)["data"]["id"]

        with ThreadPoolExecutor(8) as pool:
            plain = list(pool.map(register, range(N_USERS - N_TOKEN_USERS)))
            token_ids = list(pool.map(lambda i: register(i, f"bench-password-{i}"),
                                      range(N_USERS - N_TOKEN_USERS, N_USERS)))
            accounts = [(f"user{i}@bench.example.com", f"bench-password-{i}")
                        for i in range(N_USERS - N_TOKEN_USERS, N_USERS)]
            tokens = list(pool.map(lambda a: API.expect(200, us, "POST", "/api/auth/login",
                                                        {"email": a[0], "password": a[1]})["data"]["token"],
                                   accounts))
        self.seed = {"admin": admin, "plain": plain, "users": list(zip(token_ids, tokens)),
                     "accounts": accounts, "orders": []}
        log(f"  seeded {N_USERS} users ({N_TOKEN_USERS} with tokens) in {time.monotonic() - t0:.1f} s")

        if "order-service" in self.service_procs:
            t0 = time.monotonic()
            os_port = self.ports["order-service"]
            plans = []
            for i in range(N_ORDERS):
                uid, tok = self.seed["users"][i % N_TOKEN_USERS]
                items = [{"product_id": f"sku-{rng.randint(1, 500)}", "quantity": rng.randint(1, 5),
                          "price": rng.choice([9.99, 19.9, 29.99, 4.5, 120.0])}
                         for _ in range(rng.randint(1, 3))]
                plans.append((uid, tok, {"user_id": uid, "items": items,
                                         "shipping_address": f"{i} Seed Street, Loopback City"}))

            def order(plan):
                uid, tok, body = plan
                return API.expect(201, os_port, "POST", "/api/orders", body, tok)["id"], uid, tok

            with ThreadPoolExecutor(8) as pool:
                self.seed["orders"] = list(pool.map(order, plans))
            log(f"  seeded {N_ORDERS} orders in {time.monotonic() - t0:.1f} s")

    def sink_lines(self) -> list[tuple[int, list[str]]]:
        out = []
        for line in self.sink_log.read_text().splitlines():
            at, _, ids = line.partition("\t")
            if at.isdigit():
                out.append((int(at), [i for i in ids.split(",") if i]))
        return out

    def wait_idle(self, before: str, limit: float = 15):
        """Waits until the services use under 2 % of a core (over 0.5 s; at most `limit`
        seconds), so that what a scenario left running is not measured in the next: when wrk
        stops, the requests it sent are still served, e.g. 64 registrations waiting for their
        argon2 hashes (each holding a 7 MiB block) for about a second."""
        pids = [p.pid for p in self.service_procs.values()]
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            before_s = sum(tree_cpu_s(pid) for pid in pids)
            time.sleep(0.5)
            if sum(tree_cpu_s(pid) for pid in pids) - before_s < 0.01:
                break
        waited = time.monotonic() - t0
        if waited > 1:
            log(f"  (waited {waited:.1f} s for the services to go idle before {before})")

    def wait_quiet(self, what: str, limit: float):
        """Waits until the SMTP sink has received nothing for 2 s (at most `limit` seconds)."""
        if "notification-service" not in self.service_procs:
            return
        t0 = time.monotonic()
        last, last_change = -1, time.monotonic()
        while time.monotonic() - t0 < limit:
            size = self.sink_log.stat().st_size
            if size != last:
                last, last_change = size, time.monotonic()
            elif time.monotonic() - last_change >= 2:
                break
            time.sleep(0.2)
        log(f"  {what}: mail quiet after {time.monotonic() - t0:.1f} s ({len(self.sink_lines())} mails so far)")

    # -- scenarios -------------------------------------------------------------------------

    def data_file(self, name: str, rows) -> Path:
        path = self.work / f"{name}.tsv"
        path.write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))
        return path

    def psql(self, sql: str, database: str = "postgres") -> str:
        return subprocess.run([str(Path(PG_BINDIR) / "psql"), "-h", "127.0.0.1", "-p", str(self.pg_port),
                               "-U", "postgres", "-d", database, "-c", sql],
                              check=True, capture_output=True, text=True).stdout

    @contextlib.contextmanager
    def statements(self, key: str):
        """With `key` in BENCH_PROFILE on PostgreSQL: what PostgreSQL ran while the block ran
        (pg_stat_statements: calls, rows, execution time per statement, most time first), into
        statements-postgres-<key>.txt."""
        if key not in PROFILE or self.pg_port is None:
            yield
            return
        self.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        self.psql("SELECT pg_stat_statements_reset()")
        try:
            yield
        finally:
            report = self.psql(
                "SELECT d.datname AS database, s.calls, s.rows,"
                " round(s.total_exec_time::numeric, 1) AS exec_ms,"
                " round((s.total_exec_time / s.calls)::numeric, 3) AS ms_per_call,"
                " left(regexp_replace(s.query, '\\s+', ' ', 'g'), 160) AS statement"
                " FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
                " ORDER BY s.total_exec_time DESC LIMIT 40")
            (RESULTS / f"statements-{self.backend}-{key}.txt").write_text(report)

    @contextlib.contextmanager
    def profiled(self, key: str, service: str):
        """With `key` in BENCH_PROFILE: `perf record` the service and the whole machine while the
        block runs, then write profile-<backend>-<key>.txt."""
        if key not in PROFILE or service not in self.service_procs or not shutil.which("perf"):
            yield
            return
        perf_data = RESULTS / f"perf-{self.backend}-{key}.data"
        # DWARF unwinding: release builds keep debug info but no frame pointers.
        perf = subprocess.Popen(["perf", "record", "-F", "299", "--call-graph", "dwarf,16384",
                                 "-o", str(perf_data), "-p", str(self.service_procs[service].pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # And which processes the machine's CPU went to (generator, database, NATS…).
        system_data = RESULTS / f"perf-{self.backend}-{key}-system.data"
        system_perf = subprocess.Popen(["perf", "record", "-a", "-F", "199", "-o", str(system_data)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield
        finally:
            for recorder in (perf, system_perf):
                recorder.send_signal(signal.SIGINT)
                recorder.wait(30)
            # CPU share per thread name and binary (whole machine), then the service: inclusive
            # time per function (where the time goes), then self time.
            with open(RESULTS / f"profile-{self.backend}-{key}.txt", "w") as out:
                reports = [["--sort", "comm,dso", "--percent-limit", "1", "-i", str(system_data)],
                           ["--sort", "comm,dso,sym", "--percent-limit", "0.5", "-i", str(system_data)]]
                reports += [[mode, "-g", "none", "--percent-limit", "1.5", "-i", str(perf_data)]
                            for mode in ("--children", "--no-children")]
                for report in reports:
                    text = subprocess.run(["perf", "report", "--stdio", *report], capture_output=True,
                                          text=True).stdout
                    # Generic Rust symbols run to kilobytes; the head says which function.
                    out.writelines(line[:220] + "\n" for line in text.splitlines())

    def scenario(self, key: str, label: str, service: str, script: str, rows, note: str = ""):
        if ONLY and key not in ONLY and key != "ceiling":
            return
        if service != "ceiling" and service not in self.service_procs:
            reason = f"{service} not built" if service not in self.available else f"{service} not running"
            self.result["skipped"][key] = reason
            log(f"  {label:<44} skipped: {reason}")
            return
        env = {"BENCH_TAG": f"{self.backend}{key}{int(time.time())}"}
        if rows is not None:
            env["BENCH_DATA"] = self.data_file(key, rows)
        url = f"http://127.0.0.1:{self.ports[service]}"
        seconds = ARGON2_RUN_S if note == "argon2" else RUN_S
        self.wait_idle(key)
        self.sampler.phase = f"{key}"
        try:
            if WARMUP_S > 0:
                wrk(url, script, max(WARMUP_S, seconds) if note == "argon2" else WARMUP_S, env)
            pid = self.ceiling_pid if service == "ceiling" else self.service_procs[service].pid
            accounted = {"service": pid, **{k: v for k, v in self.infra_pids.items() if k == "database"}}
            with self.statements(key), self.profiled(key, PROFILE_SERVICE or service), \
                    cpu_used(accounted) as cpu:
                runs = [wrk(url, script, seconds, env) for _ in range(RUNS)]
        finally:
            self.sampler.phase = None
        med = lambda k: statistics.median(r[k] for r in runs)
        entry = {
            "label": label, "service": service, "note": note,
            "rps": med("rps"), "p50_ms": med("latency_p50_us") / 1000, "p90_ms": med("latency_p90_us") / 1000,
            "p99_ms": med("latency_p99_us") / 1000, "requests": sum(r["requests"] for r in runs),
            "errors": sum(r["errors"] for r in runs), "runs": runs,
            "steal_pct": med("steal_pct"),
        }
        # CPU per request of the service (and of PostgreSQL): unlike req/s, barely moved by how
        # fast the machine happens to be, so the figure to compare changes by.
        entry["cpu_us_per_request"] = {k: v * 1e6 / entry["requests"] if entry["requests"] else None
                                       for k, v in cpu.items()}
        ceiling = self.result["scenarios"].get("ceiling", {}).get("rps")
        entry["ratio"] = entry["rps"] / ceiling if ceiling else None
        self.result["scenarios"][key] = entry
        ratio = f"{entry['ratio'] * 100:5.1f}% of ceiling" if entry["ratio"] is not None else ""
        log(f"  {label:<44} {entry['rps']:9.0f} req/s {ratio}  p50 {entry['p50_ms']:.2f} ms"
            f"  p99 {entry['p99_ms']:.2f} ms  errors {entry['errors']}/{entry['requests']}  CPU/req "
            + " + ".join(f"{k} {fmt_us(v)} µs" for k, v in entry["cpu_us_per_request"].items()))

    def orders_to_mail(self, key: str) -> Path | None:
        """For a scenario from orders to mails: the folder wrk records the orders in, or None
        when the scenario is not to run (not chosen, or a service not built)."""
        if ONLY and key not in ONLY:
            return None
        missing = [s for s in ("order-service", "notification-service") if s not in self.service_procs]
        if missing:
            self.result["skipped"][key] = f"{missing[0]} not built"
            log(f"  {key:<44} skipped: {missing[0]} not built")
            return None
        record = self.work / key
        record.mkdir(exist_ok=True)
        return record

    def pipeline(self):
        """PIPELINE_RUNS runs of the pipeline, the mail of each drained before the next; its
        figures are the runs' medians, every run's kept beside them."""
        key = "pipeline"
        base = self.orders_to_mail(key)
        if base is None:
            return
        runs = []
        for i in range(PIPELINE_RUNS):
            if i:
                self.wait_quiet(f"before pipeline run {i + 1}", 180 if not SMOKE else 30)
            record = base / f"run-{i + 1}"
            record.mkdir(exist_ok=True)
            runs.append(self.pipeline_run(key, record, f"pipeline run {i + 1}" if PIPELINE_RUNS > 1 else "pipeline"))
        med = lambda k: statistics.median(r[k] for r in runs) if all(r[k] is not None for r in runs) else None
        entry = {
            "label": f"pipeline: orders → e-mail ({PIPELINE_S} s, target rate {PIPELINE_RATE}/s,"
                     f" {len(runs)} run{'s' if len(runs) > 1 else ''})",
            "target_rate": PIPELINE_RATE, "runs": runs,
            **{k: med(k) for k in ("seconds", "orders_created", "orders_per_s", "emails_delivered",
                                   "email_p50_ms", "email_p99_ms", "emails_per_s", "http_p99_ms",
                                   "steal_pct")},
            "email_max_ms": max((r["email_max_ms"] for r in runs if r["email_max_ms"] is not None),
                                default=None),
            # Every run, not the median, must deliver every mail (and, in `targets`, keep the rate).
            "all_delivered": all(r["all_delivered"] for r in runs),
            "errors": sum(r["errors"] for r in runs),
            "statuses": {s: sum(r["statuses"].get(s, 0) for r in runs)
                         for s in sorted({s for r in runs for s in r["statuses"]})},
            "cpu_us_per_order": {k: statistics.median(r["cpu_us_per_order"][k] for r in runs)
                                 if all(r["cpu_us_per_order"].get(k) is not None for r in runs) else None
                                 for k in runs[0]["cpu_us_per_order"]},
        }
        self.result["pipeline"] = entry
        if len(runs) > 1:
            p99s = ", ".join(fmt_ms(r["email_p99_ms"]) for r in runs)
            log(f"  {'pipeline, median of ' + str(len(runs)) + ' runs':<44} {entry['orders_per_s']:9.0f} orders/s"
                f"  order→mail p50 {fmt_ms(entry['email_p50_ms'])} ms p99 {fmt_ms(entry['email_p99_ms'])} ms"
                f" (runs: {p99s})")

    def pipeline_run(self, key: str, record: Path, label: str) -> dict:
        sink_before = len(self.sink_lines())
        url = f"http://127.0.0.1:{self.ports['order-service']}"
        env = {"BENCH_DATA": self.data_file("pipeline", self.seed["users"]), "BENCH_RECORD": record,
               "BENCH_RATE": PIPELINE_RATE}
        self.sampler.phase = key
        try:
            services = {s: self.service_procs[s].pid for s in ("order-service", "notification-service")}
            # Until the last mail, so the consumer's catching up counts too.
            with self.statements(key), cpu_used({**services, **self.infra_pids}) as cpu:
                with self.profiled(key, PROFILE_SERVICE or "order-service"):
                    run = wrk(url, "create_order.lua", PIPELINE_S, env)
                created = {}
                statuses: dict[str, int] = {}
                for f in record.glob("thread-*.tsv"):
                    for line in f.read_text().splitlines():
                        status, oid, at = (line.split("\t") + ["", ""])[:3]
                        statuses[status] = statuses.get(status, 0) + 1
                        if status == "201" and oid and at:
                            created[oid] = parse_time(at)
                # Wait (bounded) until every created order's mail has arrived.
                deadline = time.monotonic() + (20 if SMOKE else 60)
                while True:
                    delivered = {}
                    for at, ids in self.sink_lines()[sink_before:]:
                        for oid in ids:
                            if oid in created and oid not in delivered:
                                delivered[oid] = at / 1e9
                    if len(delivered) >= len(created) or time.monotonic() > deadline:
                        break
                    time.sleep(0.25)
        finally:
            self.sampler.phase = None
        latencies = sorted(delivered[o] - created[o] for o in delivered)
        # The worst second (orders by the second they were created in): whether the tail is
        # spread over the run or comes from a few bursts.
        by_second: dict[int, list[float]] = {}
        start = min(created.values()) if created else 0
        for o in delivered:
            by_second.setdefault(int(created[o] - start), []).append(delivered[o] - created[o])
        worst = max(((sec, statistics.median(v) * 1000) for sec, v in by_second.items()),
                    key=lambda x: x[1], default=None)
        seconds = run["duration_us"] / 1e6
        pct = lambda p: latencies[min(len(latencies) - 1, int(round(p / 100 * (len(latencies) - 1))))] * 1000 \
            if latencies else None
        last_mail = max(delivered.values()) if delivered else None
        first_order = min(created.values()) if created else None
        entry = {
            # When it ran, to read beside the database's log (autovacuum, checkpoints).
            "started": time.strftime("%H:%M:%S", time.gmtime(first_order)) if created else None,
            "seconds": seconds, "orders_created": len(created),
            "orders_per_s": len(created) / seconds if seconds else 0, "statuses": statuses,
            "errors": run["errors"], "emails_delivered": len(delivered),
            "all_delivered": len(delivered) == len(created) and len(created) > 0,
            "email_p50_ms": pct(50), "email_p99_ms": pct(99), "email_max_ms": latencies[-1] * 1000 if latencies else None,
            "emails_per_s": len(delivered) / (last_mail - first_order) if delivered and last_mail > first_order else None,
            "http_p99_ms": run["latency_p99_us"] / 1000, "steal_pct": run.get("steal_pct"),
            # What one order cost each process from its request to its mail (the wait for the
            # last mail polls every 0.25 s, so idle time adds a little).
            "cpu_us_per_order": {k: v * 1e6 / len(delivered) if delivered else None for k, v in cpu.items()},
            "worst_second": {"second": worst[0], "email_p50_ms": worst[1]} if worst else None,
        }
        p50 = f"{entry['email_p50_ms']:.0f}" if latencies else "-"
        p99 = f"{entry['email_p99_ms']:.0f}" if latencies else "-"
        log(f"  {label:<44} {entry['orders_per_s']:9.0f} orders/s  mails {len(delivered)}/{len(created)}"
            f"  order→mail p50 {p50} ms p99 {p99} ms  errors {run['errors']}"
            + (f"  (from {entry['started']} UTC; worst second: #{worst[0]}, p50 {worst[1]:.0f} ms)" if worst else ""))
        return entry

    def drain(self):
        """The consumer's capacity alone: orders are created while notification-service is
        stopped (SIGSTOP), then it is let go and mails the backlog as fast as it can. Mails per
        second and the CPU per mail of notification-service, the SMTP sink, NATS (and PostgreSQL)
        while it does, without order-service and the generator sharing the cores."""
        key = "drain"
        record = self.orders_to_mail(key)
        if record is None:
            return
        sink_before = len(self.sink_lines())
        consumer = self.service_procs["notification-service"]
        url = f"http://127.0.0.1:{self.ports['order-service']}"
        env = {"BENCH_DATA": self.data_file("drain", self.seed["users"]), "BENCH_RECORD": record,
               "BENCH_RATE": DRAIN_RATE}
        self.sampler.phase = key
        os.kill(consumer.pid, signal.SIGSTOP)
        try:
            run = wrk(url, "create_order.lua", DRAIN_ORDERS_S, env)
            created = set()
            for f in record.glob("thread-*.tsv"):
                for line in f.read_text().splitlines():
                    status, oid = (line.split("\t") + [""])[:2]
                    if status == "201" and oid:
                        created.add(oid)
            time.sleep(2)  # order-service's relay publishes the last events
            accounted = {"notification-service": consumer.pid,
                         **{k: v for k, v in self.infra_pids.items() if k in ("nats", "smtp-sink", "database")}}
            with cpu_used(accounted) as cpu:
                started = time.time()
                os.kill(consumer.pid, signal.SIGCONT)
                deadline = time.monotonic() + (30 if SMOKE else 120)
                while True:
                    delivered = {}
                    for at, ids in self.sink_lines()[sink_before:]:
                        for oid in ids:
                            if oid in created:
                                delivered.setdefault(oid, at / 1e9)
                    if len(delivered) >= len(created) or time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
        finally:
            os.kill(consumer.pid, signal.SIGCONT)
            self.sampler.phase = None
        last = max(delivered.values()) if delivered else started
        seconds = last - started
        entry = {
            "label": f"drain: a backlog of {len(created)} order mails",
            "orders_created": len(created), "emails_delivered": len(delivered),
            "all_delivered": len(delivered) == len(created) and len(created) > 0,
            "seconds": seconds, "emails_per_s": len(delivered) / seconds if seconds > 0 else None,
            "errors": run["errors"],
            # Polling every 0.1 s for the last mail adds a little idle time.
            "cpu_us_per_mail": {k: v * 1e6 / len(delivered) if delivered else None for k, v in cpu.items()},
        }
        self.result["drain"] = entry
        rate = f"{entry['emails_per_s']:.0f}" if entry["emails_per_s"] else "-"
        log(f"  {'drain':<44} {rate:>9} mails/s  mails {len(delivered)}/{len(created)}  CPU/mail "
            + " + ".join(f"{k} {fmt_us(v)} µs" for k, v in entry["cpu_us_per_mail"].items()))

    # -- the whole run -----------------------------------------------------------------------

    def execute(self, pg_port: int | None):
        log(f"==> {self.backend}: services {', '.join(self.available) or 'none'}")
        for s in SERVICES:
            if s not in self.available:
                log(f"  skipped: {s} not built")
        self.start_infrastructure(pg_port)
        fresh = {}
        for service in self.available:
            fresh[service] = self.start_service(service)
        self.result["startup_fresh_ms"] = {s: v * 1000 for s, v in fresh.items()}
        if "user-service" not in self.service_procs:
            raise RuntimeError("user-service is required")
        self.seed_data()
        self.wait_quiet("after seeding", 120 if not SMOKE else 20)
        if self.backend == "postgres":
            # Statistics, as autovacuum gathers them within a minute of a bulk load and pgbench
            # after its own: without them the planner takes the freshly seeded tables for a few
            # pages, and the services' statements, prepared after the restarts below, would keep
            # a plan made for that (a gathered read by id of 64 users scanned all 5,000 rows).
            for service in self.available:
                self.psql("ANALYZE", "bench_" + service.split("-")[0])

        # Start-up on an up-to-date database (median of several restarts), then idle RSS.
        startup, idle = {}, {}
        for service in self.available:
            samples = []
            for _ in range(STARTUP_SAMPLES):
                self.stop_service(service)
                samples.append(self.start_service(service) * 1000)
            startup[service] = {"median_ms": statistics.median(samples), "samples_ms": samples}
        time.sleep(1)
        for service, proc in self.service_procs.items():
            idle[service] = vm_rss(proc.pid)
        self.result["startup_ms"] = startup
        self.result["rss_idle"] = idle
        log("  start-up to /ready: " + ", ".join(f"{s} {v['median_ms']:.0f} ms" for s, v in startup.items()))

        users = self.seed["users"]
        orders = self.seed["orders"]
        self.scenario("ceiling", "ceiling: GET / (bare actix-web, constant JSON)", "ceiling", "get.lua", [("/", "")])
        self.scenario("get_user", "GET /api/users/{id} (own token)", "user-service", "get.lua",
                      [(f"/api/users/{u}", t) for u, t in users])
        self.scenario("list_users", "GET /api/users?limit=50 (admin)", "user-service", "get.lua",
                      [("/api/users?limit=50", self.seed["admin"])])
        self.scenario("get_order", "GET /api/orders/{id} (owner's token)", "order-service", "get.lua",
                      [(f"/api/orders/{o}", t) for o, _, t in orders] or None)
        self.scenario("user_orders", "GET /api/users/{id}/orders (own token)", "order-service", "get.lua",
                      [(f"/api/users/{u}/orders", t) for u, t in users])
        self.scenario("notifications", "GET /api/users/{id}/notifications (own token)", "notification-service",
                      "get.lua", [(f"/api/users/{u}/notifications", t) for u, t in users])
        self.scenario("login", "POST /api/auth/login (argon2 verify)", "user-service", "login.lua",
                      self.seed["accounts"], "argon2")
        self.scenario("register", "POST /api/users (argon2 hash)", "user-service", "register.lua", None, "argon2")
        self.scenario("create_order", "POST /api/orders (user check, order + outbox + audit)", "order-service",
                      "create_order.lua", users)
        self.wait_quiet("before the pipeline", 180 if not SMOKE else 30)
        self.pipeline()
        self.wait_quiet("before the drain", 180 if not SMOKE else 30)
        self.drain()

        rss_load = {}
        for phase, peaks in self.sampler.peaks.items():
            for service, rss in peaks.items():
                slot = rss_load.setdefault(service, {})
                slot[phase] = rss
        self.result["rss_peak_by_scenario"] = rss_load
        self.result["rss_load"] = {
            s: max((v for k, v in by.items() if self.result["scenarios"].get(k, {}).get("note") != "argon2"),
                   default=None) for s, by in rss_load.items()}
        self.result["rss_load_argon2"] = {
            s: max((v for k, v in by.items() if self.result["scenarios"].get(k, {}).get("note") == "argon2"),
                   default=None) for s, by in rss_load.items()}
        self.sampler.peaks = {}
        for service in list(self.service_procs):
            self.stop_service(service)


def parse_time(text: str) -> float:
    """RFC 3339 → seconds since the epoch (fractions beyond microseconds dropped)."""
    text = text.strip().replace("Z", "+00:00")
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    return dt.datetime.fromisoformat(text).timestamp()


# ---------------------------------------------------------------------------------------------
# PostgreSQL: a throwaway cluster of our own


def start_postgres(procs: Processes, work: Path) -> int:
    bindir = Path(PG_BINDIR)
    data = work / "pgdata"
    sock = work / "pgsock"
    data.mkdir()
    sock.mkdir()
    kwargs = {}
    if os.getuid() == 0:
        import pwd
        pw = pwd.getpwnam("postgres")
        for p in (work, data, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        os.chmod(work, 0o755)
        kwargs = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    subprocess.run([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True, **kwargs)
    port = free_port()
    proc = procs.start("postgres", [str(bindir / "postgres"), "-D", str(data), "-p", str(port),
                                    "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={sock}",
                                    "-c", "max_connections=200",
                                    # The database's background work (autovacuum, checkpoints),
                                    # with its times, in logs/postgres.log beside the figures.
                                    "-c", "log_autovacuum_min_duration=0", "-c", "log_checkpoints=on",
                                    # BENCH_PROFILE also reports PostgreSQL's statements.
                                    *(["-c", "shared_preload_libraries=pg_stat_statements"] if PROFILE else [])],
                       log_file=RESULTS / "logs" / "postgres.log", **kwargs)
    wait_port(port, 30, "postgres", proc)
    for _ in range(100):
        if subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                          capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    return port


# ---------------------------------------------------------------------------------------------
# Report


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass

    def version(argv):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unknown"

    info = {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem / 1024**3, 1),
        "kernel": platform.release(), "os": platform.platform(),
        "rustc": version(["rustc", "--version"]), "wrk": version(["wrk", "-v"]).split(" Copyright")[0],
        "nats": version([NATS_BIN, "--version"]),
    }
    if PG_BINDIR:
        info["postgres"] = version([str(Path(PG_BINDIR) / "postgres"), "--version"])
    return info


def binaries() -> dict:
    out = {}
    for service in SERVICES:
        path = BIN_DIR / service
        if not path.exists():
            continue
        entry = {"bytes": path.stat().st_size}
        strip = shutil.which("strip")
        if strip:
            # In a folder of its own: strip deletes its output when the input is not an
            # executable it knows (e.g. a wrapper script running a profiler).
            with tempfile.TemporaryDirectory() as tmp:
                stripped = Path(tmp) / service
                if subprocess.run([strip, "-o", str(stripped), str(path)], capture_output=True).returncode == 0:
                    entry["stripped_bytes"] = stripped.stat().st_size
        out[service] = entry
    return out


def fmt_ms(v):
    return "–" if v is None else (f"{v:.2f}" if v < 10 else f"{v:.0f}")


def fmt_us(v):
    return "–" if v is None else f"{v:,.0f}"


def fmt_mib(v):
    return "–" if v is None else f"{v / MIB:.1f}"


def targets(report: dict) -> list[dict]:
    out = []
    runs = report["backends"]

    def add(name, value, ok, note=""):
        out.append({"target": name, "measured": value, "met": ok, "note": note})

    def sc(backend, key):
        return runs.get(backend, {}).get("scenarios", {}).get(key)

    for backend, floor in (("sqlite", 0.35), ("postgres", 0.20)):
        s = sc(backend, "get_user")
        if s:
            add(f"GET user by id ≥ {floor:.0%} of ceiling ({backend})", f"{s['ratio']:.1%}", s["ratio"] >= floor)
            add(f"GET user by id p99 ≤ 10 ms ({backend})", f"{s['p99_ms']:.2f} ms", s["p99_ms"] <= 10)
    s = sc("postgres", "create_order")
    if s:
        add("POST order ≥ 5% of ceiling (postgres)", f"{s['ratio']:.1%}", s["ratio"] >= 0.05)
        add("POST order p99 ≤ 50 ms (postgres)", f"{s['p99_ms']:.1f} ms", s["p99_ms"] <= 50)
        add("POST order zero errors (postgres)", f"{s['errors']} of {s['requests']}", s["errors"] == 0)
    for backend, run in runs.items():
        p = run.get("pipeline")
        if p:
            # wrk offers orders paced at the rate from its start, and its run lasts a little
            # longer than asked (30.03-30.10 s): a service that keeps up creates every order
            # offered in the 30 s, and more, while created / wrk's duration stays just under
            # the rate. So the count decides: at least 2,000 for each of 30 seconds, in every run.
            each = p.get("runs") or [p]
            add(f"pipeline ≥ 2,000 orders/s for 30 s, every e-mail delivered ({backend})",
                " / ".join(f"{r['orders_created']:,} orders in {r['seconds']:.2f} s, "
                           f"{r['emails_delivered']:,} mails" for r in each),
                all(r["orders_created"] >= 2000 * 30 and r["seconds"] >= 29.5 and r["all_delivered"]
                    and r["errors"] == 0 for r in each))
            p99 = p["email_p99_ms"]
            runs_p99 = f" (median; runs {', '.join(fmt_ms(r['email_p99_ms']) for r in each)})" if len(each) > 1 else ""
            add(f"pipeline order→e-mail p99 ≤ 250 ms ({backend})", f"{fmt_ms(p99)} ms{runs_p99}",
                p99 is not None and p99 <= 250)
        for service, rss in run.get("rss_load", {}).items():
            if rss is not None:
                add(f"RSS under load ≤ 40 MiB: {service} ({backend})", f"{fmt_mib(rss)} MiB", rss <= 40 * MIB)
        for service, rss in run.get("rss_load_argon2", {}).items():
            if rss is not None:
                add(f"RSS under argon2 load ≤ 40 MiB: {service} ({backend})", f"{fmt_mib(rss)} MiB", rss <= 40 * MIB)
        for service, st in run.get("startup_ms", {}).items():
            add(f"start-up to ready ≤ 150 ms: {service} ({backend})", f"{st['median_ms']:.0f} ms", st["median_ms"] <= 150)
    return out


def markdown(report: dict) -> str:
    runs = report["backends"]
    backends = list(runs)
    m = report["machine"]
    s = report["settings"]
    policy = ("SCHED_BATCH: its wake-ups do not preempt the services" if s.get("generator_policy") == "batch"
              else "an ordinary task: its wake-ups preempt the services")
    lines = [
        f"# Benchmark results ({'smoke' if s['smoke'] else 'full run'}, {report['finished']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}; {m['rustc']};"
        f" {m['wrk']}; {m.get('postgres', 'PostgreSQL n/a')}; {m['nats']}."
        f" Binaries: cargo profile `{s.get('cargo_profile', 'release')}`"
        f" ({'thin LTO, one codegen unit: what the images ship' if s.get('cargo_profile') == 'dist' else 'as `cargo build --release`'}).",
        f"Generator: wrk, {s['threads']} threads, {s['connections']} connections, loopback, on the same cores as"
        f" the services ({policy}); {s['warmup_s']} s warm-up, then the median of {s['runs']} runs of {s['run_s']} s."
        f" Data: {s['users']} users ({s['token_users']} with a password and token), {s['orders']} orders.",
        "Ratios are to the ceiling (a bare actix-web handler returning constant JSON) measured in the same run.",
        "",
    ]
    head = "| scenario |" + "".join(f" {b}: req/s | × ceiling | p50 ms | p99 ms | errors | CPU µs/req | CPU steal |"
                                    for b in backends)
    lines += ["CPU µs/req: CPU time the service used per request (+ PostgreSQL's, on PostgreSQL), from"
              " /proc over the measured runs; it moves less with the machine's speed than req/s does."
              " CPU steal: the share of the machine's CPU time its hypervisor gave to others during the"
              " measured runs (0 % on dedicated hardware).", ""]
    lines += [head, "|---|" + "---:|---:|---:|---:|---:|---:|---:|" * len(backends)]
    keys = []
    for b in backends:
        for k in list(runs[b]["scenarios"]) + list(runs[b]["skipped"]):
            if k not in keys and k != "pipeline":
                keys.append(k)
    for k in keys:
        label = next((runs[b]["scenarios"][k]["label"] for b in backends if k in runs[b]["scenarios"]), k)
        row = f"| {label} |"
        for b in backends:
            e = runs[b]["scenarios"].get(k)
            if e:
                ratio = f"{e['ratio']:.1%}" if e["ratio"] is not None else "–"
                steal = f"{e['steal_pct']:.0f} %" if e.get("steal_pct") is not None else "–"
                cpu = " + ".join(fmt_us(v) for v in e.get("cpu_us_per_request", {}).values()) or "–"
                row += (f" {e['rps']:,.0f} | {ratio} | {fmt_ms(e['p50_ms'])} | {fmt_ms(e['p99_ms'])} |"
                        f" {e['errors']} | {cpu} | {steal} |")
            else:
                row += f" skipped: {runs[b]['skipped'].get(k, 'n/a')} | | | | | | |"
        lines.append(row)
    lines += ["", "Pipeline (order created → e-mail accepted by the SMTP sink; wrk paced to the target rate):", "",
              "| backend | orders/s | orders | e-mails delivered | order→e-mail p50 ms | p99 ms | max ms | HTTP p99 ms | errors | CPU steal |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for b in backends:
        p = runs[b].get("pipeline")
        if p:
            each = p.get("runs") or [p]
            rows = [(f"{b}, run {i + 1}", r) for i, r in enumerate(each)] if len(each) > 1 else []
            rows.append((f"{b}, median of {len(each)}" if len(each) > 1 else b, p))
            for name, r in rows:
                lines.append(f"| {name} | {r['orders_per_s']:,.0f} | {r['orders_created']:.0f} |"
                             f" {r['emails_delivered']:.0f} | {fmt_ms(r['email_p50_ms'])} | {fmt_ms(r['email_p99_ms'])} |"
                             f" {fmt_ms(r['email_max_ms'])} | {fmt_ms(r['http_p99_ms'])} | {r['errors']} |"
                             f" {r.get('steal_pct') or 0:.0f} % |")
        else:
            lines.append(f"| {b} | skipped: {runs[b]['skipped'].get('pipeline', 'n/a')} | | | | | | | | |")
    for b in backends:
        per_order = (runs[b].get("pipeline") or {}).get("cpu_us_per_order")
        if per_order:
            lines += ["", f"CPU per order on {b}, from its request to its e-mail (µs): "
                      + ", ".join(f"{k} {fmt_us(v)}" for k, v in per_order.items())
                      + f"; {fmt_us(sum(v for v in per_order.values() if v))} in all."]
    drains = [(b, runs[b]["drain"]) for b in backends if runs[b].get("drain")]
    if drains:
        lines += ["", "Drain (orders created while notification-service is stopped, then mailed as fast as it"
                  " can; CPU per mail of the processes that do it):", "",
                  "| backend | mails | mails/s | CPU µs per mail |", "|---|---:|---:|---|"]
        for b, d in drains:
            cpu = d["cpu_us_per_mail"]
            lines.append(f"| {b} | {d['emails_delivered']}/{d['orders_created']} |"
                         f" {d['emails_per_s'] or 0:,.0f} | "
                         + ", ".join(f"{k} {fmt_us(v)}" for k, v in cpu.items())
                         + f"; {fmt_us(sum(v for v in cpu.values() if v))} in all |")
    lines += ["", "Resources (start-up: exec → first 200 from /ready on an up-to-date database, median of"
              f" {s['startup_samples']}; RSS from /proc/PID/status VmRSS; load = peak over the non-argon2 scenarios):", "",
              "| service | backend | start-up ms | start-up on a fresh DB ms | RSS idle MiB | RSS under load MiB |"
              " RSS under argon2 load MiB | binary MiB (stripped) |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for b in backends:
        r = runs[b]
        for service in SERVICES:
            if service not in r.get("startup_ms", {}):
                continue
            binary = report["binaries"].get(service, {})
            size = f"{fmt_mib(binary.get('bytes'))} ({fmt_mib(binary.get('stripped_bytes'))})"
            lines.append(f"| {service} | {b} | {r['startup_ms'][service]['median_ms']:.0f} |"
                         f" {r.get('startup_fresh_ms', {}).get(service, 0):.0f} |"
                         f" {fmt_mib(r.get('rss_idle', {}).get(service))} |"
                         f" {fmt_mib(r.get('rss_load', {}).get(service))} |"
                         f" {fmt_mib(r.get('rss_load_argon2', {}).get(service))} | {size} |")
    lines += ["", "Targets (issue 10):", "", "| target | measured | met |", "|---|---:|:---:|"]
    for t in report["targets"]:
        lines.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "logs").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    procs = Processes(Path(os.environ.get("BENCH_PID_FILE", work / "pids")))
    sampler = RssSampler()
    report = {
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": {"smoke": SMOKE, "threads": THREADS, "connections": CONNECTIONS, "warmup_s": WARMUP_S,
                     "run_s": RUN_S, "runs": RUNS, "users": N_USERS, "token_users": N_TOKEN_USERS,
                     "orders": N_ORDERS, "pipeline_s": PIPELINE_S, "pipeline_rate": PIPELINE_RATE,
                     "startup_samples": STARTUP_SAMPLES, "seed": SEED,
                     "generator_policy": "batch" if BATCH_PARAM else "normal",
                     "cargo_profile": os.environ.get("BENCH_CARGO_PROFILE", "release")},
        "machine": machine(), "binaries": binaries(), "backends": {},
    }
    failures = []
    t0 = time.monotonic()
    try:
        if shutil.which("openssl"):
            subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                            "-out", str(work / "jwt.pem")], check=True, capture_output=True)
        for backend in BACKENDS:
            pg_port = None
            pg_proc_count = len(procs.procs)
            if backend == "postgres":
                if not PG_BINDIR:
                    log("==> postgres: skipped: PostgreSQL is not installed")
                    continue
                pg_port = start_postgres(procs, work)
            run = Run(backend, procs, work, sampler)
            try:
                run.execute(pg_port)
            except Exception as e:  # report what was measured and go on with the next backend
                failures.append(f"{backend}: {e}")
                log(f"  FAILED: {e}")
            finally:
                for _, proc in reversed(procs.procs[pg_proc_count:]):
                    procs.stop(proc)
                if pg_port:
                    for _, proc in reversed(list(procs.procs)):
                        procs.stop(proc)
            report["backends"][backend] = run.result
    finally:
        sampler.close()
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)

    report["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    report["elapsed_s"] = round(time.monotonic() - t0, 1)
    report["targets"] = targets(report)
    # Harness health: every scenario that ran got answers, and nearly all of them 2xx.
    passed = 0
    for backend, run in report["backends"].items():
        for key, e in run["scenarios"].items():
            if e["requests"] > 0 and e["errors"] <= 0.01 * e["requests"]:
                passed += 1
            else:
                failures.append(f"{backend} {key}: {e['errors']} errors in {e['requests']} requests")
        p = run.get("pipeline")
        if p:
            if p["orders_created"] > 0 and p["emails_delivered"] > 0:
                passed += 1
            else:
                failures.append(f"{backend} pipeline: {p['orders_created']} orders, {p['emails_delivered']} mails")
        d = run.get("drain")
        if d:
            if d["all_delivered"]:
                passed += 1
            else:
                failures.append(f"{backend} drain: {d['orders_created']} orders, {d['emails_delivered']} mails")
    md = markdown(report)
    (RESULTS / f"{NAME}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (RESULTS / f"{NAME}.md").write_text(md)
    log("")
    log(md)
    log(f"results: bench/results/{NAME}.md, bench/results/{NAME}.json ({report['elapsed_s']} s)")
    for f in failures:
        log(f"FAILED: {f}")
    log(f"bench: {passed} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
