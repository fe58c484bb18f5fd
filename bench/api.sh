#!/usr/bin/env bash
# Bulk Web API (issue 11), measured in one run on one machine:
#  1. a 100k-record employees file submitted over HTTP (POST /v1/sandbox/loads/employees?wait,
#     timed from the request to the finished result) versus the same file through a pass
#     (`bulkload run`): ratio = pass seconds / API seconds (goal: >= 0.9);
#  2. inquiry (GET /v1/sandbox/employees?limit=100&offset=...) under 50 concurrent clients with
#     wrk (Debian package `wrk`): p50 / p99 latency and requests/s.
#
#   bench/api.sh                 N=100000 records, 20 s of wrk
#   N=20000 SECS=5 bench/api.sh  a quick run
#   PROFILE=debug ...            use target/debug (no release build; figures only indicative)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-100000}
SECS=${SECS:-20}
PORT=${PORT:-18765}
W=${BENCH_DIR:-$ROOT/target/bench-api}
export CARGO_TARGET_DIR=$ROOT/target
PROFILE=${PROFILE:-release}
T=$CARGO_TARGET_DIR/$PROFILE
command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk)" >&2; exit 1; }
command -v curl >/dev/null || { echo "bench: curl is missing (apt-get install curl)" >&2; exit 1; }

echo "== build ($PROFILE)"
if [ "$PROFILE" = release ]; then (cd "$ROOT" && cargo build --release --quiet); else (cd "$ROOT" && cargo build --quiet); fi
rm -rf "$W"; mkdir -p "$W"

echo "== generate $N employees"
python3 - "$W/employees.json" "$N" <<'PY'
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    f.write("[\n")
    for i in range(n):
        f.write(("," if i else "") + json.dumps({
            "Mode": "create", "ExternalId": f"E{i}", "FirstName": f"First{i}", "LastName": f"Last{i}",
            "Email": f"e{i}@bench.example", "City": "Gering", "StateCode": "NE", "ZipCode": "69341",
            "DivisionThreadIds": ["0123456789abcdef0123456789abcdef"]}) + "\n")
    f.write("]\n")
PY
ls -l "$W/employees.json" | awk '{printf "   %.1f MB\n", $5/1e6}'

mkconfig() { # <data_dir> -> config path
  sed -e "s|^data_dir = .*|data_dir = \"$1\"|" \
      -e 's|^environments = .*|environments = ["sandbox"]|' \
      -e 's|^listen = "127.0.0.1:2222"|listen = "127.0.0.1:0"|' \
      -e "s|^listen = \"127.0.0.1:8080\"|listen = \"127.0.0.1:$PORT\"|" \
      -e 's|^requests_per_minute = .*|requests_per_minute = 100000000|' \
      "$ROOT/config.example.toml" > "$1.toml"
  echo "$1.toml"
}
now() { date +%s.%N; }

echo "== through a pass (bulkload run)"
D=$W/pass; mkdir -p "$D"; CFG=$(mkconfig "$D")
$T/bulkload run --config "$CFG" --settle-seconds 0 >/dev/null
cp "$W/employees.json" "$D/lenders/demo/sandbox/import/pickup/"
t0=$(now)
$T/bulkload run --config "$CFG" --settle-seconds 0 > "$W/pass.log"
t1=$(now)
PASS=$(echo "$t1 - $t0" | bc -l)
grep -q "$N created" "$W/pass.log" || { echo "pass did not create $N: $(cat "$W/pass.log")" >&2; exit 1; }
printf "   %.2f s\n" "$PASS"

echo "== over HTTP (POST ?wait, bulkload serve)"
D=$W/api; mkdir -p "$D"; CFG=$(mkconfig "$D")
$T/bulkload serve --config "$CFG" > "$W/serve.log" 2>&1 &
SERVE=$!
trap 'kill $SERVE 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  grep -q "listening for the Bulk Web API" "$W/serve.log" && break
  sleep 0.1
done
TOKEN=$(curl -sf -u demo-client:demo -d grant_type=client_credentials "http://127.0.0.1:$PORT/oauth/token" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
t0=$(now)
curl -sf -X POST "http://127.0.0.1:$PORT/v1/sandbox/loads/employees?wait=60" \
  -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  --data-binary @"$W/employees.json" -o "$W/api-result.json" -w '%{http_code}\n' > "$W/api-code"
t1=$(now)
API=$(echo "$t1 - $t0" | bc -l)
[ "$(cat "$W/api-code")" = 200 ] || { echo "API answered $(cat "$W/api-code"), not 200 (not finished in 60 s?)" >&2; exit 1; }
python3 - "$W/api-result.json" "$N" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["NumCreateSuccess"] == int(sys.argv[2]), r
PY
printf "   %.2f s\n" "$API"

echo "== inquiry: 50 concurrent clients for $SECS s (wrk)"
cat > "$W/pages.lua" <<LUA
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/v1/sandbox/employees?limit=100&offset=" .. ((n * 100) % $N))
end
LUA
wrk -t2 -c50 -d"${SECS}s" --latency -s "$W/pages.lua" -H "Authorization: Bearer $TOKEN" \
  "http://127.0.0.1:$PORT" > "$W/wrk.txt"
cat "$W/wrk.txt"
P50=$(awk '$1=="50%" {print $2}' "$W/wrk.txt")
P99=$(awk '$1=="99%" {print $2}' "$W/wrk.txt")
RPS=$(awk '/Requests\/sec/ {print $2}' "$W/wrk.txt")
NON2XX=$(awk '/Non-2xx/ {print $NF}' "$W/wrk.txt")

echo
echo "== summary (N=$N, commit $(cd "$ROOT" && git rev-parse --short HEAD))"
printf "submit %d records: pass %.2f s, API %.2f s, ratio pass/API = %.2f (goal >= 0.9)\n" "$N" "$PASS" "$API" "$(echo "$PASS / $API" | bc -l)"
echo "inquiry, 50 clients, 100 records a page: p50 $P50, p99 $P99, $RPS requests/s, non-2xx: ${NON2XX:-0}"
