#!/usr/bin/env bash
# API fuzzing: schemathesis generates requests from GET /api/v1/openapi.json and checks that no
# answer is a 5xx and that every answer matches the documented schema. Runs against the release
# binary's demo (SQLite + Stripe simulator), signed in. Prints one Markdown table row.
set -uo pipefail
cd "$(dirname "$0")/.."
command -v schemathesis >/dev/null || pip install -q schemathesis >/dev/null 2>&1
mkdir -p bench/results/logs
log=bench/results/logs/schemathesis.log
data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
target/release/mascot-server demo --port "$port" --data-dir "$data" > bench/results/logs/server-schemathesis.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
token=$(curl -fs -X POST "http://127.0.0.1:$port/api/v1/auth/signup" -H 'content-type: application/json' \
  -d '{"email":"fuzz@bench.example.com","password":"fuzz correct horse"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
timeout 600 schemathesis run "http://127.0.0.1:$port/api/v1/openapi.json" --url "http://127.0.0.1:$port" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance \
  --exclude-path /api/v1/auth/logout --max-examples "${SCHEMATHESIS_EXAMPLES:-30}" -H "Authorization: Bearer $token" > "$log" 2>&1
status=$?
summary=$(grep -A1 "^Test cases:" "$log" | tail -1 | sed "s/^ *//")
if [ $status -eq 0 ]; then
  echo "| schemathesis against /api/v1/openapi.json (no 5xx, responses match the schema) | ${summary} | ✅ |"
else
  echo "| schemathesis against /api/v1/openapi.json (no 5xx, responses match the schema) | ${summary} (see bench/results/logs/schemathesis.log) | ❌ |"
fi
exit $status
