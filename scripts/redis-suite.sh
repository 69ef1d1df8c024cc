#!/usr/bin/env bash
# Runs Redis 7.0.15's own unit files (../shared/redis-tests, see its README)
# against a fresh single tandem server and fails if a test fails that is
# not listed, with its reason, in test/redis-suite/expected-failures.txt, or
# if a listed one passes (the list must stay true).
#
# Tests that would hang a unit or break the rest of it are skipped, each
# with its reason, as listed in test/redis-suite/skip.txt. REDIS_SUITE_ARGS
# passes more runtest options (e.g. --baseport on a machine where another
# run holds the harness's ports).
#
# usage: scripts/redis-suite.sh [unit ...]
#   (default: unit/type/hash unit/type/list unit/type/list-2 unit/type/set unit/type/zset unit/multi unit/pubsub unit/scripting unit/quit unit/info-command)
set -euo pipefail
cd "$(dirname "$0")/.."
# The suite is handed to the project beside the repository (../shared);
# a clone elsewhere finds it at /work/shared or through REDIS_TESTS.
SUITE=${REDIS_TESTS:-}
if [ -z "$SUITE" ]; then
  for d in ../shared/redis-tests /work/shared/redis-tests; do
    if [ -x "$d/run.sh" ]; then SUITE=$d; break; fi
  done
fi
if [ -z "$SUITE" ] || [ ! -x "$SUITE/run.sh" ]; then
  # Not in the repository (its licence and size are Redis's): say so
  # loudly rather than fail a machine that was not given it.
  echo "redis-suite: NOT RUN: Redis's test suite is not at ../shared/redis-tests, /work/shared/redis-tests or \$REDIS_TESTS"
  exit 0
fi
[ $# -gt 0 ] || set -- unit/type/hash unit/type/list unit/type/list-2 unit/type/set unit/type/zset unit/multi unit/pubsub unit/scripting unit/quit unit/info-command
# A test's time limit: list-2's LTRIM stress tests make about 17,000
# durable (fsynced) writes each, 16 s on an idle machine, more on a busy
# one; Redis's 30 s default would fail them for the machine's load.
export REDIS_SUITE_ARGS="${REDIS_SUITE_ARGS:-} --timeout 180"
work=$(mktemp -d)
go build -o "$work/tandem" ./cmd/tandem
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$work/tandem" server --dir "$work/data" --resp-addr "127.0.0.1:$port" --peer-addr 127.0.0.1:0 \
  --http-addr 127.0.0.1:0 --log-level warn >"$work/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do
  (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
  sleep 0.1
done
# The tests test/redis-suite/skip.txt names for these units are not run.
skips=""
while IFS= read -r pat; do
  skips="$skips --skiptest '$pat'"
done < <(grep -v '^#' test/redis-suite/skip.txt | sed 's/  #.*$//' | grep -v '^$' |
  grep -E "^($(IFS='|'; echo "$*")): " | sed -E 's/^[^:]*: //')
REDIS_SUITE_ARGS="${REDIS_SUITE_ARGS:-}$skips" RT="$work/rt" "$SUITE/run.sh" "$port" "$@" | tee "$work/summary"
# Every failed test by name, as "unit: name", against the expected list:
# the per-test [err] lines (the summary at the end is missing when an
# exception ends the unit), and an exception as "unit: exception: text".
for u in "$@"; do
  log="$work/rt/$(echo "$u" | tr / _).log"
  # (grep finds nothing in a unit with no failure: not an error.)
  sed 's/\x1b\[[0-9;]*m//g' "$log" | { grep -a -E '^\[(err|exception)\]: ' || true; } |
    sed -E 's/^\[err\]: //; s/ in tests\/.*$//; s/^\[exception\]: /exception: /' | sed "s|^|$u: |"
  # A test past --timeout ends the unit ("[TIMEOUT]", then the test in
  # progress); the tests after it do not run, so say which one hung.
  sed 's/\x1b\[[0-9;]*m//g' "$log" | { grep -a -E '=> \(IN PROGRESS\) ' || true; } |
    sed -E 's/^.*=> \(IN PROGRESS\) /timeout: /' | sed "s|^|$u: |"
  # run.sh's own limit on a unit (timeout 600) ends it without a word;
  # the harness's end, or an exception's line, is otherwise always there.
  if ! grep -a -q -E 'The End|^\[.*exception' "$log"; then echo "$u: did not finish (run.sh's time limit per unit?)"; fi
done | sort -u >"$work/failed"
grep -v '^#' test/redis-suite/expected-failures.txt | sed 's/   *# .*$//' | grep -v '^$' |
  grep -E "^($(IFS='|'; echo "$*")): " | sort -u >"$work/expected"
if ! diff -u "$work/expected" "$work/failed"; then
  echo "redis-suite: the failures differ from test/redis-suite/expected-failures.txt (- expected, + got)"
  exit 1
fi
echo "redis-suite: only the expected failures"
