#!/usr/bin/env bash
# Instructions per request for the rows of benches/stack.rs, counted by callgrind: repeatable
# where times on a shared machine are not. Prints a Markdown table with ratios to the floor
# and to the hand-built equivalent of each path.
#
#   bash benches/instructions.sh            # needs valgrind (Debian: apt-get install valgrind)
#
# The crate is built with its default features, as users get it; set FEATURES to build
# otherwise (FEATURES=--all-features counts the `metrics` counters too, with no recorder).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }

features=${FEATURES:-}
# shellcheck disable=SC2086 # FEATURES is a list of cargo arguments
bin=$(cargo bench --bench stack $features --no-run --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | grep '/stack-' | tail -1)
requests=100000 # PROFILE_REQUESTS in benches/stack.rs; the loopback rows run a tenth of it

declare -A ir
count() {
  local out err
  out=$(mktemp) err=$(mktemp)
  INFOPLUG_PROFILE_ROW=$1 valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" --bench >/dev/null 2>"$err"
  # The largest count is the benchmark's own process (criterion may spawn a helper).
  local n=$requests
  [[ $1 == loopback/* ]] && n=$((requests / 10))
  ir[$1]=$(( $(grep 'I   refs:' "$err" | awk '{print $NF}' | tr -d , | sort -n | tail -1) / n ))
  rm -f "$out" "$err"
}

rows=(
  "success/bare|bare transport (the floor)|success/bare|"
  "success/set_request_header|tower-http SetRequestHeader (sensitive)|success/bare|"
  "success/auth|AuthLayer|success/bare|success/set_request_header"
  "success/auth_scoped|AuthLayer scoped to an origin|success/bare|success/set_request_header"
  "success/classify|ClassifyLayer (2xx)|success/bare|"
  "success/tower_retry|tower::retry, clone-only policy|success/bare|"
  "success/retry|RetryLayer|success/bare|success/tower_retry"
  "success/tower_retry_set_header|tower::retry + SetRequestHeader|success/bare|"
  "success/stack|InfoPlugLayer (whole stack)|success/bare|success/tower_retry_set_header"
  "error/bare|400 + 101-byte body, bare|error/bare|"
  "error/classify|400, ClassifyLayer (read + parse)|error/bare|"
  "error/naive_stack|400, naive classifier + tower::retry + SetRequestHeader|error/bare|"
  "error/stack|400, InfoPlugLayer|error/bare|error/naive_stack"
  "retry/tower_retry|429 → 200, tower::retry|success/bare|"
  "retry/retry|429 → 200, RetryLayer (zero wait)|success/bare|retry/tower_retry"
  "retry/naive_stack|429 → 200, naive classifier + tower::retry + SetRequestHeader|success/bare|"
  "retry/stack|429 → 200, InfoPlugLayer (zero wait)|success/bare|retry/naive_stack"
  "body/bare|200 + 1 MiB body read, bare|body/bare|"
  "body/stack|200 + 1 MiB body read, InfoPlugLayer|body/bare|"
  "loopback/plain|loopback keep-alive round trip, hyper (server in process)|loopback/plain|"
  "loopback/stack|loopback round trip, InfoPlugLayer|loopback/plain|loopback/plain"
)
for row in "${rows[@]}"; do count "${row%%|*}"; done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "Counted $(date -u +%F) on $(nproc) cores ($(uname -m)), features: ${features:-default}."
echo
echo "| row | instructions/request | vs floor | vs hand-built equivalent |"
echo "|---|---:|---:|---:|"
for row in "${rows[@]}"; do
  IFS='|' read -r id label floor equivalent <<<"$row"
  vs=""
  [ -n "$equivalent" ] && vs="$(ratio "${ir[$id]}" "${ir[$equivalent]}") (\`$equivalent\`)"
  echo "| $label | ${ir[$id]} | $(ratio "${ir[$id]}" "${ir[$floor]}") | $vs |"
done
