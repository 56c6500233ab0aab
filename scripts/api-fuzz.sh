#!/usr/bin/env bash
# Fuzzes the HTTP API against its own OpenAPI document with Schemathesis:
# starts a fresh `m2m serve` on a free port and an empty data directory,
# registers a user for the bearer token, then runs every check, positive
# and negative, with the stateful phase, for a time budget.
#
#   scripts/api-fuzz.sh [M2M_BINARY] [SECONDS]
#
# M2M_BINARY defaults to target/debug/m2m (built if missing), SECONDS to 180.
# Needs schemathesis 4 (`pip install 'schemathesis==4.32.5'`, as .ci/run does). Exit status 0
# only when Schemathesis found no failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/debug/m2m}
budget=${2:-180}
[ -x "$bin" ] || cargo build --bin m2m
if python3 -c 'import schemathesis' 2>/dev/null; then
  st=(python3 -m schemathesis.cli)
elif command -v schemathesis >/dev/null; then
  st=(schemathesis)
else
  echo "schemathesis not found: pip install 'schemathesis==4.32.5'" >&2
  exit 1
fi

work=$(mktemp -d)
log="$work/serve.log"
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
M2M_LOG=warn "$bin" serve --listen 127.0.0.1:0 --data-dir "$work/data" 2>"$log" >"$work/stdout" &
pid=$!
base=""
for _ in $(seq 1 100); do
  base=$(grep -hEo 'http://127\.0\.0\.1:[0-9]+' "$work/stdout" 2>/dev/null | head -1 || true)
  [ -n "$base" ] && break
  sleep 0.1
done
[ -n "$base" ] || { echo "m2m serve did not start:" >&2; cat "$log" >&2; exit 1; }

user="fuzz-$(date +%s)"
curl -sf -X POST "$base/v1/users" -H 'Content-Type: application/json' \
  -d "{\"username\": \"$user\", \"password\": \"correct horse battery\"}" >/dev/null
token=$(curl -sf -X POST "$base/v1/login" -H 'Content-Type: application/json' \
  -d "{\"username\": \"$user\", \"password\": \"correct horse battery\"}" |
  sed -E 's/.*"access_token":"([^"]+)".*/\1/')

status=0
"${st[@]}" --config-file scripts/schemathesis.toml run "$base/openapi.json" \
  --checks all \
  --phases examples,coverage,fuzzing,stateful \
  --max-time "$budget" \
  --header "Authorization: Bearer $token" \
  --request-timeout 20 \
  --seed "${M2M_FUZZ_SEED:-$RANDOM}" || status=$?
if ! kill -0 "$pid" 2>/dev/null; then
  echo "m2m serve died during the run:" >&2; cat "$log" >&2; exit 1
fi
if grep -q 'panicked' "$log"; then
  echo "m2m serve panicked during the run:" >&2; grep -A5 panicked "$log" >&2; exit 1
fi
exit "$status"
