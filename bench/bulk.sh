#!/usr/bin/env bash
# bench/bulk.sh: bench/run.sh's bulk load alone, without a control plane.
#
# Starts a static 3-node cluster (`tandem up --static`: node 1 leads,
# nothing fails over, so a loaded machine's false failover cannot void the
# load as it can in bench/run.sh), sends KEYS keys (key:0..key:KEYS-1,
# DATA_SIZE-byte values, run.sh's gen_resp) through STREAMS concurrent
# `redis-cli --pipe` connections to the leader, waits until both followers
# have applied it, and prints keys/s, each node's CPU per key (user +
# system from /proc, from the start of the load until the followers have
# applied it), each node's RSS at rest (SETTLE s later) and its disk.
# For an A/B, run it with TANDEM set to each build in turn.
#
# Usage (from anywhere; needs redis-cli, curl, jq):  bench/bulk.sh
#   KEYS       keys loaded                             [1000000]
#   STREAMS    concurrent redis-cli --pipe loaders     [50]
#   DATA_SIZE  value size in bytes                     [100]
#   SETTLE     seconds before the RSS is read          [4]
#   PORT       RESP port of node 1 (the next two too) [31800]
#   TANDEM     a tandem binary to measure (default: built from this tree)
#   PROFILE    a file: the leader's CPU profile over the load's first 8 s
#              is written there                        []
set -euo pipefail
KEYS=${KEYS:-1000000}
STREAMS=${STREAMS:-50}
DATA_SIZE=${DATA_SIZE:-100}
SETTLE=${SETTLE:-4}
P=${PORT:-31800}
PROFILE=${PROFILE:-}
NAME=bulk
# shellcheck source=static.sh
source "$(dirname "${BASH_SOURCE[0]}")/static.sh"
gen_resp() { # n part parts: as bench/run.sh's
  awk -v n="$1" -v part="$2" -v parts="$3" -v size="$DATA_SIZE" 'BEGIN{
    pad = sprintf("%0" size "d", 0)
    for (i = part; i < n; i += parts) {
      k = "key:" i
      v = substr(i "-" pad, 1, size)
      printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, size, v
    }
  }'
}
for ((j = 0; j < STREAMS; j++)); do gen_resp "$KEYS" "$j" "$STREAMS" >"$D/in.$j"; done
status() { curl -s --max-time 2 "http://127.0.0.1:$((P + 200))/status"; }
lc=$(cpu "$L") f1c=$(cpu "$F1") f2c=$(cpu "$F2")
t0=$(date +%s.%N)
pids=()
for ((j = 0; j < STREAMS; j++)); do
  redis-cli -p "$P" --pipe --pipe-timeout 120 <"$D/in.$j" >"$D/out.$j" 2>&1 &
  pids+=($!)
done
prof=
if [ -n "$PROFILE" ]; then
  curl -s --max-time 30 -o "$PROFILE" "http://127.0.0.1:$((P + 200))/debug/pprof/profile?seconds=8" &
  prof=$!
fi
# A pipe that got error replies exits non-zero: they are counted below.
wait "${pids[@]}" || true
t1=$(date +%s.%N)
for _ in $(seq 600); do
  st=$(status)
  [ "$(jq '[.followers[]? | .applied_lsn] | min' <<<"$st")" = "$(jq '.applied_lsn' <<<"$st")" ] && break
  sleep 0.1
done
[ -z "$prof" ] || wait "$prof" || true
lc=$(($(cpu "$L") - lc)) f1c=$(($(cpu "$F1") - f1c)) f2c=$(($(cpu "$F2") - f2c))
errors=$(cat "$D"/out.* | awk '/errors:/{gsub(",",""); e+=$2} END{print e+0}')
grep -hv '^errors:\|^All data transferred\|^Last reply received\|^$' "$D"/out.* | sort | uniq -c | sort -rn | head -3 | sed 's/^/  error reply: /' || true
n=$(redis-cli -p $((P + 1)) dbsize)
sleep "$SETTLE"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v k="$KEYS" -v s="$STREAMS" -v t0="$t0" -v t1="$t1" -v e="$errors" -v n="$n" -v lc="$lc" -v f1c="$f1c" -v f2c="$f2c" 'BEGIN{
  printf "bulk load of %d keys (%d pipes): %.0f keys/s, %d errors, follower DBSIZE %d\n", k, s, k/(t1-t0), e, n
  printf "  CPU us per key (until the followers applied it): leader %.2f, followers %.2f %.2f\n", lc*1e4/k, f1c*1e4/k, f2c*1e4/k }'
echo "  RSS at rest (MB): leader $(($(rss "$L") / 1024)), followers $(($(rss "$F1") / 1024)) $(($(rss "$F2") / 1024))"
echo "  disk (MB): $(for n in "$D"/data/*/; do du -sm "$n" | cut -f1; done | paste -sd' ')"
# Pebble's own count of what the load cost each node's LSM (/debug/memory):
# bytes flushed and compacted over bytes in, and its compactions.
for i in 0 1 2; do
  curl -s --max-time 10 "http://127.0.0.1:$((P + 200 + i))/debug/memory" | jq -r .Storage.Pebble |
    awk -v n=$((i + 1)) '$1 == "total" {for (f = NF; f > 0; f--) if ($f ~ /^[0-9.]+$/) {w = $f; break}} /^Compactions:/ {c = $2}
      END {printf "  node %d: Pebble write-amp %s, %s compactions\n", n, w, c}'
done
