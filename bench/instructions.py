#!/usr/bin/env python3
"""User-space instructions per request of a service, counted by valgrind's callgrind.

    bench/instructions.py BIN_DIR [--scenario get_user|create_order] [--requests N]
                                  [--rounds R] [--database-url URL]

Throughput on a shared virtual machine drifts by a third within an hour, which hides changes of
a few percent. An instruction count barely depends on how fast the machine is: rounds of the
same binary differ by about ±5 % (how often a thread finds its peer's answer ready, and the
timers that fire while it runs, depend on timing), so the median of a few rounds ranks changes
of that size. It leaves out the kernel's share (syscalls, context switches) and says nothing of
waiting: it measures the service's own code, not its I/O.

Scenarios:
- get_user: `GET /api/users/{id}` with a valid token, user-service counted;
- create_order: `POST /api/orders` (two items), order-service counted, user-service running
  beside it uncounted. The outbox relay publishes each order's event to NATS on its own, as it
  does when orders trickle in; under load it publishes batches, so this overstates its share.

It starts the services from BIN_DIR (SQLite in a temporary folder unless --database-url names a
database server, e.g. postgres://postgres@127.0.0.1:5432, in which a fresh database per service
is created; its own nats-server on a free port), registers a user and logs in, then, each round,
runs the counted service under callgrind twice: once answering one request and once answering
N+1, all on one keep-alive connection with one worker. The difference over N is the round's
figure; start-up, shutdown and the first request's warm-up cancel out. The callgrind files stay
in the printed folder for `callgrind_annotate`.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import API, PREFIX, REPO, free_port, ready_once

PASSWORD = "instructions-per-request"
ORDER = {"items": [{"product_id": "sku-1", "quantity": 2, "price": "19.90"},
                   {"product_id": "sku-2", "quantity": 1, "price": "4.50"}],
         "shipping_address": "1 Callgrind Street, Loopback City"}
# The counted service of each scenario, and its request: (method, path, body, expected status).
SCENARIOS = {
    "get_user": ("user-service", lambda user_id: ("GET", f"/api/users/{user_id}", None, 200)),
    "create_order": ("order-service",
                     lambda user_id: ("POST", "/api/orders", json.dumps({"user_id": user_id, **ORDER}), 201)),
}


def wait_ready(service, port, proc, limit):
    started = time.monotonic()
    while not ready_once(port):
        if proc.poll() is not None:
            sys.exit(f"{service} exited during start-up (exit {proc.returncode})")
        if time.monotonic() - started > limit:
            sys.exit(f"{service} not ready within {limit} s")
        time.sleep(0.2)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bin_dir", type=Path)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="get_user")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", help="a PostgreSQL server, e.g. postgres://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    for tool in ("valgrind", "nats-server", "openssl") + (("psql",) if args.database_url else ()):
        if not shutil.which(tool):
            sys.exit(f"instructions: {tool} is required (Debian: apt-get install -y {tool})")
    counted, make_request = SCENARIOS[args.scenario]
    services = ["user-service"] + ([counted] if counted != "user-service" else [])
    work = Path(tempfile.mkdtemp(prefix="instructions-"))
    ports = {service: free_port() for service in services}
    nats_port = free_port()
    nats = subprocess.Popen(["nats-server", "-js", "-a", "127.0.0.1", "-p", str(nats_port), "-sd", str(work / "nats")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", str(work / "jwt.pem")], check=True, capture_output=True)

    server = (args.database_url or "").rstrip("/")
    created = []

    def psql(sql):
        subprocess.run(["psql", "-q", "-d", server + "/postgres", "-c", sql], check=True, capture_output=True)

    def database(service):
        if not server:
            return f"sqlite://{work / service}.db?mode=rwc"
        name = f"instructions_{service.split('-')[0]}_{ports[service]}"
        psql(f"CREATE DATABASE {name}")
        created.append(name)
        return f"{server}/{name}"

    def service_env(service):
        p = PREFIX[service]
        env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(PREFIX.values()))}
        env.update({
            "APP_ENV": "bench", "CONFIG_DIR": str(REPO / service / "config"),
            f"{p}__HTTP__HOST": "127.0.0.1", f"{p}__HTTP__PORT": str(ports[service]),
            # One worker: every request takes the same path through the same thread.
            f"{p}__HTTP__WORKERS": "1",
            f"{p}__DATABASE__URL": database(service),
            f"{p}__NATS__URL": f"nats://127.0.0.1:{nats_port}",
        })
        if service == "user-service":
            env[f"{p}__AUTH__SIGNING_KEY_PATH"] = str(work / "jwt.pem")
        else:
            env[f"{p}__AUTH__JWKS_URL"] = f"http://127.0.0.1:{ports['user-service']}/.well-known/jwks.json"
            env[f"{p}__USER_SERVICE__URL"] = f"http://127.0.0.1:{ports['user-service']}"
        return env

    envs = {service: service_env(service) for service in services}
    running = []
    try:
        users = subprocess.Popen([str(args.bin_dir / "user-service")], env=envs["user-service"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        running.append(users)
        port = ports["user-service"]
        wait_ready("user-service", port, users, 30)
        email = f"instructions-{port}@example.com"
        user_id = API.expect(201, port, "POST", "/api/users",
                             {"name": "Instructions", "email": email, "password": PASSWORD})["data"]["id"]
        token = API.expect(200, port, "POST", "/api/auth/login", {"email": email, "password": PASSWORD})["data"]["token"]
        if counted == "user-service":
            users.send_signal(signal.SIGTERM)
            users.wait(30)
            running.remove(users)
        method, path, body, status = make_request(user_id)
        headers = {"Authorization": f"Bearer {token}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        binary, env, port = args.bin_dir / counted, envs[counted], ports[counted]

        def count(requests: int) -> int:
            out = work / f"callgrind.{requests}.{time.monotonic_ns()}"
            proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--fair-sched=yes", f"--callgrind-out-file={out}", str(binary)],
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_ready(counted, port, proc, 300)
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                for _ in range(requests):
                    connection.request(method, path, body=body, headers=headers)
                    response = connection.getresponse()
                    response.read()
                    assert response.status == status, (response.status, path)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(120)
            return int(re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M).group(1))

        rounds = [(count(args.requests + 1) - count(1)) / args.requests for _ in range(args.rounds)]
        backend = "postgres" if args.database_url else "sqlite"
        print(f"{method} {path.replace(user_id, '{id}')} ({backend}): {statistics.median(rounds):,.0f} instructions per"
              f" request, median of {args.rounds} rounds of {args.requests} (range {min(rounds):,.0f}-{max(rounds):,.0f};"
              f" callgrind files in {work})")
    finally:
        for proc in running:
            proc.terminate()
            proc.wait(30)
        nats.terminate()
        nats.wait(30)
        for name in created:
            psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
