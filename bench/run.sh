#!/usr/bin/env bash
# One command for the whole benchmark: builds release, runs the standard
# scenarios and writes their table into docs/performance.md.
#   bench/run.sh            # everything (about 5 minutes on 2 cores)
#   bench/run.sh --quick    # fewer steps, for checking the script itself
#   bench/run.sh --cbor     # also the embedded ramp with CBOR uploads
#                           # (or M2M_BENCH_CBOR=1), a second table
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p m2m
if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk (login load)"
  apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
if command -v rabbitmqctl >/dev/null 2>&1 && ! rabbitmqctl status >/dev/null 2>&1; then
  rabbitmq-server -detached
  timeout 120 rabbitmqctl await_startup
fi
# pika reads a few queued events to report their size.
python3 -c 'import pika' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check 'pika==1.3.2'
exec python3 bench/run.py "$@"
