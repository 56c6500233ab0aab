#!/usr/bin/env bash
# Fuzzes the HTTP API against its own OpenAPI document with Schemathesis:
# starts a fresh `m2m serve` on a free port and an empty data directory,
# registers a patient and creates a therapist for their bearer tokens, then
# runs every check, positive and negative, with the stateful phase, for a
# time budget shared by the two.
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

password="correct horse battery"
login() {
  curl -sf -X POST "$base/v1/login" -H 'Content-Type: application/json' \
    -d "{\"username\": \"$1\", \"password\": \"$password\"}" |
    sed -E 's/.*"access_token":"([^"]+)".*/\1/'
}
# A patient (self-registered) and a therapist (made by the operator's
# command, on the same data directory): each role's routes are fuzzed
# with its own token, the patient's for two thirds of the budget.
user="fuzz-$(date +%s)"
curl -sf -X POST "$base/v1/users" -H 'Content-Type: application/json' \
  -d "{\"username\": \"$user\", \"password\": \"$password\"}" >/dev/null
M2M_LOG=warn M2M_PASSWORD="$password" "$bin" users add --role therapist \
  --username "dr-$user" --data-dir "$work/data" >/dev/null

# Both log in now: after a while of fuzzing, the failed-login limiter
# refuses this address (access tokens last 15 minutes).
patient_token=$(login "$user")
therapist_token=$(login "dr-$user")

status=0
for who in patient therapist; do
  if [ "$who" = patient ]; then
    share=$((budget * 2 / 3)); token=$patient_token
  else
    share=$((budget - budget * 2 / 3)); token=$therapist_token
  fi
  echo "== fuzzing as the $who for ${share} s"
  "${st[@]}" --config-file scripts/schemathesis.toml run "$base/openapi.json" \
    --checks all \
    --phases examples,coverage,fuzzing,stateful \
    --max-time "$share" \
    --header "Authorization: Bearer $token" \
    --request-timeout 20 \
    --seed "${M2M_FUZZ_SEED:-$RANDOM}" || status=$?
done
if ! kill -0 "$pid" 2>/dev/null; then
  echo "m2m serve died during the run:" >&2; cat "$log" >&2; exit 1
fi
if grep -q 'panicked' "$log"; then
  echo "m2m serve panicked during the run:" >&2; grep -A5 panicked "$log" >&2; exit 1
fi
exit "$status"
