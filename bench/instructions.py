#!/usr/bin/env python3
"""User-space instructions per request of user-service, counted by valgrind's callgrind.

    bench/instructions.py BIN_DIR [--requests N] [--rounds R] [--database-url URL]

Throughput on a shared virtual machine drifts by a third within an hour, which hides changes of
a few percent. An instruction count barely depends on how fast the machine is: rounds of the
same binary differ by about ±5 % (how often a thread finds its peer's answer ready, and the
timers that fire while it runs, depend on timing), so the median of a few rounds ranks changes
of that size. It leaves out the kernel's share (syscalls, context switches) and says nothing of
waiting: it measures the service's own code, not its I/O.

It starts user-service from BIN_DIR (SQLite in a temporary folder unless --database-url names
another database, e.g. a fresh PostgreSQL one; its own nats-server on a free port), registers a
user and logs in, then, each round, runs the service under callgrind twice: once answering one
`GET /api/users/{id}` and once answering N+1, all on one keep-alive connection with one worker.
The difference over N is the round's figure; start-up, shutdown and the first request's warm-up
cancel out. The callgrind files stay in the printed folder for `callgrind_annotate`.
"""

import argparse
import http.client
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

from harness import API, REPO, free_port, ready_once

PASSWORD = "instructions-per-request"


def wait_ready(port, proc, limit):
    started = time.monotonic()
    while not ready_once(port):
        if proc.poll() is not None:
            sys.exit(f"user-service exited during start-up (exit {proc.returncode})")
        if time.monotonic() - started > limit:
            sys.exit(f"user-service not ready within {limit} s")
        time.sleep(0.2)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bin_dir", type=Path)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    for tool in ("valgrind", "nats-server", "openssl"):
        if not shutil.which(tool):
            sys.exit(f"instructions: {tool} is required (Debian: apt-get install -y {tool})")
    binary = args.bin_dir / "user-service"
    work = Path(tempfile.mkdtemp(prefix="instructions-"))
    port, nats_port = free_port(), free_port()
    nats = subprocess.Popen(["nats-server", "-js", "-a", "127.0.0.1", "-p", str(nats_port), "-sd", str(work / "nats")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", str(work / "jwt.pem")], check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("USER_SERVICE__")}
    env.update({
        "APP_ENV": "bench", "CONFIG_DIR": str(REPO / "user-service" / "config"),
        "USER_SERVICE__HTTP__HOST": "127.0.0.1", "USER_SERVICE__HTTP__PORT": str(port),
        # One worker: every request takes the same path through the same thread.
        "USER_SERVICE__HTTP__WORKERS": "1",
        "USER_SERVICE__DATABASE__URL": args.database_url or f"sqlite://{work / 'users.db'}?mode=rwc",
        "USER_SERVICE__NATS__URL": f"nats://127.0.0.1:{nats_port}",
        "USER_SERVICE__AUTH__SIGNING_KEY_PATH": str(work / "jwt.pem"),
    })
    try:
        proc = subprocess.Popen([str(binary)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_ready(port, proc, 30)
        email = f"instructions-{port}@example.com"
        user_id = API.expect(201, port, "POST", "/api/users",
                             {"name": "Instructions", "email": email, "password": PASSWORD})["data"]["id"]
        token = API.expect(200, port, "POST", "/api/auth/login", {"email": email, "password": PASSWORD})["data"]["token"]
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)

        def count(requests: int) -> int:
            out = work / f"callgrind.{requests}.{time.monotonic_ns()}"
            proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--fair-sched=yes", f"--callgrind-out-file={out}", str(binary)],
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_ready(port, proc, 300)
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                for _ in range(requests):
                    connection.request("GET", f"/api/users/{user_id}", headers={"Authorization": f"Bearer {token}"})
                    response = connection.getresponse()
                    response.read()
                    assert response.status == 200, response.status
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(120)
            return int(re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M).group(1))

        rounds = [(count(args.requests + 1) - count(1)) / args.requests for _ in range(args.rounds)]
        backend = (args.database_url or "sqlite").split(":")[0]
        print(f"GET /api/users/{{id}} ({backend}): {statistics.median(rounds):,.0f} instructions per request,"
              f" median of {args.rounds} rounds of {args.requests} (range {min(rounds):,.0f}-{max(rounds):,.0f};"
              f" callgrind files in {work})")
    finally:
        nats.terminate()
        nats.wait(30)


if __name__ == "__main__":
    main()
