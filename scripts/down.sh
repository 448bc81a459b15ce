#!/usr/bin/env bash
# `make down`: stops the services `make up` started (SIGTERM: they drain, then exit).
set -euo pipefail
cd "$(dirname "$0")/.."
for pidfile in data/pids/*.pid; do
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    echo "stopped $(basename "$pidfile" .pid)"
  fi
  rm -f "$pidfile"
done
if [ "${WITH_NATS:-0}" = 1 ] && [ -f data/nats/nats-server.pid ]; then
  kill -TERM "$(cat data/nats/nats-server.pid)" 2>/dev/null && echo "stopped nats-server"
  rm -f data/nats/nats-server.pid
fi
