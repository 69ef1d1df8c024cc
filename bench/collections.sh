#!/usr/bin/env bash
# bench/collections.sh: big collections on a 3-node tandem (tandem up, async)
# against Redis 7 (appendonly yes, appendfsync always):
#   1. RSS and disk of the leader and of Redis holding a hash of SIZE fields;
#   2. DEL of a SIZE-element hash, set and sorted set: time to the reply, time
#      until both followers applied it, and the leader's disk before the DEL,
#      right after it and WAIT_S seconds later (Pebble reclaims a dropped
#      collection's rows in its compactions; tandem's sweep removes versions
#      no metadata names).
#
# Usage (from anywhere; needs redis-server, redis-cli, curl, jq, go):
#   bench/collections.sh
# Knobs: SIZE [1000000] elements per collection, PER [1000] elements per
# write command while loading, WAIT_S [60], BASE_PORT [auto], KEEP=1 keeps
# the temp dir.
set -euo pipefail

SIZE=${SIZE:-1000000}
PER=${PER:-1000}
WAIT_S=${WAIT_S:-60}
KEEP=${KEEP:-0}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH=$PATH:/usr/local/go/bin

say() { printf '%s\n' "$*"; }
die() { printf 'collections: %s\n' "$*" >&2; exit 1; }
for c in redis-server redis-cli curl jq go; do command -v $c >/dev/null || die "$c not found"; done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tandem-collections.XXXXXX")
UP_PID="" REDIS_PID="" NODE_PIDS=()
cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  [ -z "$UP_PID" ] || { kill -TERM "$UP_PID" 2>/dev/null || true; wait "$UP_PID" 2>/dev/null || true; }
  for p in "${NODE_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true; done
  [ -z "$REDIS_PID" ] || { kill -TERM "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; }
  if [ "$KEEP" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [ -n "${BASE_PORT:-}" ]; then T=$BASE_PORT; else
  for _ in $(seq 200); do
    T=$((20000 + (RANDOM % 120) * 100 + RANDOM % 40)); ok=1
    for p in $((T - 1)) $((T + 199)) $T $((T + 1)) $((T + 2)) $((T + 100)) $((T + 101)) $((T + 102)) $((T + 200)) $((T + 201)) $((T + 202)) $((T + 50)); do
      port_free $p || { ok=0; break; }
    done
    [ $ok = 1 ] && break
  done
fi
T_HTTP=$((T + 200)) R_PORT=$((T + 50))

now_ms() { echo $(($(date +%s%N) / 1000000)); }
rss_mb() { awk '/^VmRSS:/{printf "%.1f", $2/1024}' "/proc/$1/status"; }
du_mb() { du -sb "$@" 2>/dev/null | awk '{s += $1} END {printf "%.1f", s/1048576}'; }
status() { curl -s --max-time 2 "http://127.0.0.1:$((T_HTTP + $1))/status"; }

# resp CMD KEY KIND: SIZE elements of KEY as RESP commands of PER elements.
resp() {
  awk -v n="$SIZE" -v per="$PER" -v cmd="$1" -v key="$2" -v kind="$3" 'BEGIN {
    for (i = 0; i < n; i += per) {
      m = (n - i < per) ? n - i : per
      w = (kind == "set") ? 1 : 2
      printf "*%d\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", 2 + w * m, length(cmd), cmd, length(key), key
      for (j = i; j < i + m; j++) {
        e = sprintf("element:%012d", j)
        if (kind == "hash") { v = "value:" j; printf "$%d\r\n%s\r\n$%d\r\n%s\r\n", length(e), e, length(v), v }
        else if (kind == "zset") { s = "" j; printf "$%d\r\n%s\r\n$%d\r\n%s\r\n", length(s), s, length(e), e }
        else printf "$%d\r\n%s\r\n", length(e), e
      }
    }
  }'
}
load() { # port cmd key kind
  resp "$2" "$3" "$4" | redis-cli -p "$1" --pipe >/dev/null || die "loading $3 on port $1 failed"
}

say "building tandem"
(cd "$REPO" && go build -o "$WORK/tandem" ./cmd/tandem) || die "go build failed"

say "starting tandem (3 nodes, async) on $T and Redis on $R_PORT"
setsid "$WORK/tandem" up --dir "$WORK/t" --nodes 3 --port $((T - 1)) --mode async --sentinel-port 0 >"$WORK/up.log" 2>&1 &
UP_PID=$!
redis-server --port "$R_PORT" --bind 127.0.0.1 --dir "$WORK" --appendonly yes --appendfsync always --save "" --daemonize no --logfile "$WORK/redis.log" &
REDIS_PID=$!
for _ in $(seq 600); do
  kill -0 "$UP_PID" 2>/dev/null || { cat "$WORK/up.log" >&2; die "tandem up exited"; }
  if [ "$(redis-cli -p $T ping 2>/dev/null)" = PONG ] && [ "$(redis-cli -p "$R_PORT" ping 2>/dev/null)" = PONG ] &&
    [ "$(status 0 | jq '[.followers[]? | select(.connected)] | length' 2>/dev/null)" = 2 ]; then break; fi
  sleep 0.1
done
[ "$(status 0 | jq -r .role)" = leader ] || die "node 1 is not the leader"
for i in 0 1 2; do NODE_PIDS+=("$(status $i | jq -r .pid)"); done
LEADER_PID=${NODE_PIDS[0]}

say ""
say "== 1. a hash of $SIZE fields (element:%012d -> value:N)"
r0=$(rss_mb "$LEADER_PID"); rr0=$(rss_mb "$REDIS_PID")
t0=$(now_ms); load $T HSET h hash; t1=$(now_ms); load "$R_PORT" HSET h hash; t2=$(now_ms)
[ "$(redis-cli -p $T hlen h)" = "$SIZE" ] || die "tandem HLEN h is not $SIZE"
sleep 2
printf '%-8s %10s %12s %12s %10s\n' "" "load s" "RSS MB" "RSS empty" "disk MB"
printf '%-8s %10.1f %12s %12s %10s\n' tandem "$(echo "($t1 - $t0) / 1000" | bc -l)" "$(rss_mb "$LEADER_PID")" "$r0" "$(du_mb "$WORK/t/n1")"
printf '%-8s %10.1f %12s %12s %10s\n' redis "$(echo "($t2 - $t1) / 1000" | bc -l)" "$(rss_mb "$REDIS_PID")" "$rr0" "$(du_mb "$WORK/appendonlydir" "$WORK"/*.aof)"
say "(tandem: the leader's RSS and data dir, log included; redis: used RSS and AOF)"

say ""
say "== 2. DEL of $SIZE elements"
load $T SADD s set
load $T ZADD z zset
printf '%-6s %10s %14s %12s %12s %14s\n' key "reply ms" "followers ms" "disk before" "disk after" "disk +${WAIT_S}s"
declare -A AFTER
for key in h s z; do
  before=$(du_mb "$WORK/t/n1")
  t0=$(now_ms)
  [ "$(redis-cli -p $T del $key)" = 1 ] || die "DEL $key did not delete"
  t1=$(now_ms)
  target=$(status 0 | jq .durable_lsn)
  for _ in $(seq 6000); do
    a1=$(status 1 | jq .applied_lsn); a2=$(status 2 | jq .applied_lsn)
    [ "$a1" -ge "$target" ] && [ "$a2" -ge "$target" ] && break
    sleep 0.01
  done
  t2=$(now_ms)
  AFTER[$key]=$(du_mb "$WORK/t/n1")
  printf '%-6s %10d %14d %12s %12s %14s\n' "$key" $((t1 - t0)) $((t2 - t0)) "$before" "${AFTER[$key]}" "(below)"
done
sleep "$WAIT_S"
say "leader's disk ${WAIT_S}s after the last DEL: $(du_mb "$WORK/t/n1") MB (followers: $(du_mb "$WORK/t/n2") / $(du_mb "$WORK/t/n3") MB)"
redis-cli -p "$R_PORT" hlen h >/dev/null
t0=$(now_ms); redis-cli -p "$R_PORT" del h >/dev/null; t1=$(now_ms)
say "redis DEL of the $SIZE-field hash: $((t1 - t0)) ms to the reply"
