#!/usr/bin/env bash
# bench/large.sh: the memory of one large SET, without a control plane.
#
# Starts a static 3-node cluster (`tandem up --static`: node 1 leads,
# nothing fails over, so a loaded machine's false failover cannot lose the
# SET as it can in bench/run.sh), sends one SET of SIZE bytes (base64 of
# random bytes) to the leader, waits until both followers have it
# (STRLEN), and prints each node's peak RSS growth (VmHWM) as a multiple
# of the value (issue 19's target: at most 3x), the RSS growth 3 s later,
# and the CPU each process used from the SET to then.
#
# Usage (from anywhere; needs redis-cli):  bench/large.sh
#   SIZE       value size in bytes                    [67108864]
#   PORT       RESP port of node 1 (the next two too) [31700]
#   TANDEM     a tandem binary to measure (default: built from this tree)
set -euo pipefail
SIZE=${SIZE:-67108864}
P=${PORT:-31700}
NAME=large
# shellcheck source=static.sh
source "$(dirname "${BASH_SOURCE[0]}")/static.sh"
{ head -c "$SIZE" /dev/urandom | base64 -w0 | head -c "$SIZE" >"$D/v"; } || true
lh=$(hwm "$L") f1h=$(hwm "$F1") f2h=$(hwm "$F2") lr=$(rss "$L") fr=$(rss "$F1") lc=$(cpu "$L") fc=$(cpu "$F1")
t0=$(date +%s%N)
redis-cli -p "$P" -x set big <"$D/v" >/dev/null
t1=$(date +%s%N)
for port in $((P + 1)) $((P + 2)); do
  for _ in $(seq 6000); do [ "$(redis-cli -p "$port" strlen big 2>/dev/null)" = "$SIZE" ] && break; sleep 0.02; done
done
t2=$(date +%s%N)
sleep 3
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v s="$SIZE" -v a=$(($(hwm "$L") - lh)) -v b=$(($(hwm "$F1") - f1h)) -v c=$(($(hwm "$F2") - f2h)) \
  -v lr=$(($(rss "$L") - lr)) -v fr=$(($(rss "$F1") - fr)) -v lc=$(($(cpu "$L") - lc)) -v fc=$(($(cpu "$F1") - fc)) \
  -v ack=$(((t1 - t0) / 1000000)) -v rep=$(((t2 - t0) / 1000000)) 'BEGIN{
  printf "one SET of %d bytes: peak RSS growth / value: leader %.2fx, followers %.2fx %.2fx (target <= 3.0x)\n", s, a*1024/s, b*1024/s, c*1024/s
  printf "  RSS growth 3 s later: leader %.2fx, follower %.2fx; CPU from the SET to then: leader %.2f s, follower %.2f s\n", lr*1024/s, fr*1024/s, lc/100, fc/100
  printf "  reply after %d ms, on both followers after %d ms\n", ack, rep }'
