#!/usr/bin/env bash
# The memory and time of `m2m export` (docs/performance.md, "Export"):
# fills a fresh data directory with GAMES (default 2000) standard 16-channel
# games (60 s at 100 Hz, flex, force, gyro and accelerometer, a 6 Hz
# tremor: m2m_synth::GameSpec::standard()) through `m2m serve` and
# `m2m simulate`, then exports it as Parquet and as CSV under
# /usr/bin/time -v and prints, for each, the peak RSS, the wall time and
# the tables' sizes.
#   bench/export.sh                 # builds the release binary first
#   GAMES=200 bench/export.sh       # a quicker check of the script
#   M2M_BIN=path/to/m2m bench/export.sh   # a binary already built
set -euo pipefail
cd "$(dirname "$0")/.."
GAMES=${GAMES:-2000}
if [ -z "${M2M_BIN:-}" ]; then
  cargo build --release -p m2m
  M2M_BIN=target/release/m2m
fi
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$M2M_BIN" serve --listen 127.0.0.1:0 --data-dir "$work/data" >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
for _ in $(seq 200); do
  grep -q 'm2m serving on http://' "$work/serve.out" && break
  sleep 0.1
done
base=$(sed -nE 's/^m2m serving on (http:\/\/[^ ]+).*/\1/p' "$work/serve.out" | head -1)
[ -n "$base" ] || { echo "m2m serve did not start:" >&2; cat "$work/serve.err" >&2; exit 1; }

echo "filling $work/data with $GAMES games through $base"
t0=$(date +%s)
# simulate waits until every accepted game is analysed (its notification).
"$M2M_BIN" simulate --base-url "$base" --users 20 --concurrency 4 --games "$GAMES" \
  --seed 1 --game-seconds 60 --sample-rate-hz 100 --channels flex,force,gyro,accel \
  --tremor-hz 6 --noise 0.3 --json >"$work/simulate.json"
echo "filled in $(( $(date +%s) - t0 )) s: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["accepted"], "accepted,", r["processed"], "processed,", r["failed"], "failed")' "$work/simulate.json" 2>/dev/null | head -c 300)"
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
du -sh "$work/data/m2m.db" | sed 's/^/database: /'

printf '\n| format | games | samples | peak RSS | wall time | games table | samples table |\n|---|---|---|---|---|---|---|\n'
for format in parquet csv; do
  out="$work/out-$format"
  /usr/bin/time -v "$M2M_BIN" export --data-dir "$work/data" --out "$out" --format "$format" \
    >"$work/export-$format.out" 2>"$work/export-$format.time"
  rss_kb=$(sed -nE 's/.*Maximum resident set size \(kbytes\): ([0-9]+)/\1/p' "$work/export-$format.time")
  wall=$(sed -nE 's/.*Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (.*)/\1/p' "$work/export-$format.time")
  line=$(cat "$work/export-$format.out")
  games=$(echo "$line" | sed -nE 's/^exported ([0-9]+) games.*/\1/p')
  samples=$(echo "$line" | sed -nE 's/.*\(([0-9]+) samples\).*/\1/p')
  gsize=$(du -h "$out/games.$format" | cut -f1)
  ssize=$(du -h "$out/samples.$format" | cut -f1)
  echo "| $format | $games | $samples | $(( rss_kb / 1024 )) MB | $wall | $gsize | $ssize |"
done
